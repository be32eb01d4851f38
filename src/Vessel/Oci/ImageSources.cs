using System.IO.Compression;
using Vessel.Common;
using Vessel.Tar;

namespace Vessel.Oci;

/// <summary>
/// Opens an image source from what a user typed (docs/formats/image-sources.md):
/// <list type="bullet">
/// <item><c>oci:DIR[:TAG|@DIGEST]</c>, or a directory holding <c>oci-layout</c>: an OCI image layout;</item>
/// <item><c>oci-archive:FILE[:TAG|@DIGEST]</c>: an OCI layout in a tar file;</item>
/// <item><c>docker-archive:FILE[:NAME:TAG|:@N]</c>: what <c>docker save</c> writes;</item>
/// <item><c>tarball:FILE</c>: a root filesystem tarball (.tar or .tar.gz);</item>
/// <item><c>docker://REF</c> or a bare <c>[REGISTRY/]NAME[:TAG][@DIGEST]</c>: an image in a registry.</item>
/// </list>
/// A file given without a prefix is recognized by its content: an uncompressed tar holding
/// <c>manifest.json</c> is a docker-archive, one holding <c>oci-layout</c> and
/// <c>index.json</c> an oci-archive, any other tar or gzip file a root filesystem tarball.
/// </summary>
public static class ImageSources
{
    private const int SniffEntries = 8; // a compressed image archive names its metadata or blobs within its first entries
    private const long SniffBytes = 16 << 20; // and stops looking after this much decompressed data

    public static async Task<IImageSource> OpenAsync(string reference, ImageSourceOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(options);
        cancellationToken.ThrowIfCancellationRequested();
        if (reference.Length == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "The image source is empty; give a path, an oci:/docker-archive: reference or a registry reference.");
        }
        if (TryStrip(reference, "oci:", out string rest))
        {
            (string dir, string? tag, OciDigest? digest) = SplitLocal(rest, Directory.Exists, "oci:");
            return OpenLayoutDirectory(dir, tag, digest, reference, options);
        }
        if (TryStrip(reference, "oci-archive:", out rest))
        {
            (string file, string? tag, OciDigest? digest) = SplitLocal(rest, File.Exists, "oci-archive:");
            return OpenOciArchive(RequireFile(file, reference), tag, digest, reference, options, cancellationToken);
        }
        if (TryStrip(reference, "docker-archive:", out rest))
        {
            (string file, string? name, _) = SplitLocal(rest, File.Exists, "docker-archive:", allowDigest: false);
            return OpenDockerArchive(RequireFile(file, reference), name, reference, cancellationToken);
        }
        if (TryStrip(reference, "tarball:", out rest))
        {
            return new RootfsTarballImageSource(RequireFile(rest, reference), reference);
        }
        if (reference.StartsWith("docker://", StringComparison.Ordinal))
        {
            return new RegistryImageSource(RegistryReference.Parse(reference), options);
        }

        // No prefix: a local path (possibly with :TAG or @DIGEST) if one exists, else a registry reference.
        if (TryLocal(reference, out string? path, out string? selector, out OciDigest? selectedDigest))
        {
            if (Directory.Exists(path))
            {
                return OpenLayoutDirectory(path, selector, selectedDigest, reference, options);
            }
            return await OpenFileAsync(path!, selector, selectedDigest, reference, options, cancellationToken);
        }
        if (LooksLikePath(reference))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"Image source '{reference}': no such file or directory.");
        }
        if (!RegistryReference.TryParse(reference, out RegistryReference? registryReference, out string? error))
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"{error} It is not an existing file or directory either; see docs/formats/image-sources.md for the accepted forms.");
        }
        return new RegistryImageSource(registryReference!, options);
    }

    private static async Task<IImageSource> OpenFileAsync(string path, string? selector, OciDigest? digest, string description, ImageSourceOptions options, CancellationToken cancellationToken)
    {
        byte[] magic = new byte[6];
        int have;
        await using (var probe = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, useAsync: true))
        {
            have = await probe.ReadAtLeastAsync(magic, magic.Length, throwOnEndOfStream: false, cancellationToken);
        }
        ReadOnlySpan<byte> head = magic.AsSpan(0, have);
        if (head.StartsWith((ReadOnlySpan<byte>)[0x1f, 0x8b]))
        {
            RejectSelector(selector, digest, description, "a gzip-compressed tarball");
            await RejectCompressedImageArchiveAsync(path, description, cancellationToken);
            return new RootfsTarballImageSource(path, description);
        }
        if (head.StartsWith((ReadOnlySpan<byte>)[0x28, 0xb5, 0x2f, 0xfd]) || head.StartsWith((ReadOnlySpan<byte>)[0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0])
            || head.StartsWith("BZh"u8))
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"Image source '{description}' is compressed with zstd, xz or bzip2; Vessel reads uncompressed or gzip tarballs. Decompress it first (or recompress with gzip).");
        }

        TarArchiveIndex archive = TarArchiveIndex.Open(path, $"'{description}'", tolerant: true, cancellationToken);
        try
        {
            bool docker = archive.Contains("manifest.json");
            bool oci = archive.Contains("oci-layout") && archive.Contains("index.json");
            if ((docker || oci) && archive.HasUnsafeNames)
            {
                throw new InvalidDataException(
                    $"Image archive '{description}' has a member '{OciDigest.Printable(archive.UnsafeName)}' whose name is absolute or escapes the archive root ('..'); refusing it.");
            }
            if (docker)
            {
                return new DockerArchiveImageSource(archive, selector, PositionOf(selector), description);
            }
            if (oci)
            {
                return new OciLayoutImageSource(new ArchiveLayoutFiles(archive, $"oci-archive '{description}'"), selector, digest, description, options);
            }
            archive.Dispose();
            RejectSelector(selector, digest, description, "a root filesystem tarball");
            return new RootfsTarballImageSource(path, description);
        }
        catch
        {
            archive.Dispose();
            throw;
        }
    }

    private static IImageSource OpenLayoutDirectory(string dir, string? tag, OciDigest? digest, string description, ImageSourceOptions options)
    {
        if (!Directory.Exists(dir))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"Image source '{description}': no directory '{dir}'.");
        }
        if (!File.Exists(Path.Combine(dir, "oci-layout")))
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"Image source '{description}': '{dir}' is a directory but not an OCI image layout (it has no oci-layout file).");
        }
        return new OciLayoutImageSource(new DirectoryLayoutFiles(dir), tag, digest, description, options);
    }

    private static IImageSource OpenOciArchive(string file, string? tag, OciDigest? digest, string description, ImageSourceOptions options, CancellationToken cancellationToken)
    {
        TarArchiveIndex archive = TarArchiveIndex.Open(file, $"oci-archive '{description}'", cancellationToken);
        return new OciLayoutImageSource(new ArchiveLayoutFiles(archive, $"oci-archive '{description}'"), tag, digest, description, options);
    }

    private static IImageSource OpenDockerArchive(string file, string? name, string description, CancellationToken cancellationToken)
    {
        TarArchiveIndex archive = TarArchiveIndex.Open(file, $"docker-archive '{description}'", cancellationToken);
        return new DockerArchiveImageSource(archive, PositionOf(name) is null ? name : null, PositionOf(name), description);
    }

    private static int? PositionOf(string? selector) =>
        selector is not null && selector.StartsWith('@') && int.TryParse(selector.AsSpan(1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n)
            ? n
            : null;

    private static bool TryStrip(string reference, string prefix, out string rest)
    {
        if (reference.StartsWith(prefix, StringComparison.Ordinal))
        {
            rest = reference[prefix.Length..];
            return true;
        }
        rest = string.Empty;
        return false;
    }

    /// <summary>Splits "PATH[:SELECTOR]" or "PATH@DIGEST": the longest prefix that exists is the path.</summary>
    private static (string Path, string? Selector, OciDigest? Digest) SplitLocal(string text, Func<string, bool> exists, string prefix, bool allowDigest = true)
    {
        if (exists(text))
        {
            return (text, null, null);
        }
        int at = text.LastIndexOf('@');
        if (allowDigest && at > 0 && text.AsSpan(at + 1).StartsWith(OciDigest.Sha256Prefix, StringComparison.Ordinal))
        {
            return (text[..at], null, OciDigest.Parse(text[(at + 1)..], $"'{prefix}{text}'"));
        }
        for (int colon = text.IndexOf(':', StringComparison.Ordinal); colon > 0; colon = text.IndexOf(':', colon + 1))
        {
            if (exists(text[..colon]))
            {
                return (text[..colon], text[(colon + 1)..], null);
            }
        }
        return (text, null, null); // the caller reports the missing path
    }

    private static bool TryLocal(string reference, out string? path, out string? selector, out OciDigest? digest)
    {
        static bool Exists(string p) => File.Exists(p) || Directory.Exists(p);
        (path, selector, digest) = SplitLocal(reference, Exists, string.Empty);
        return Exists(path);
    }

    private static bool LooksLikePath(string reference) =>
        reference.StartsWith('/') || reference.StartsWith("./", StringComparison.Ordinal) || reference.StartsWith("../", StringComparison.Ordinal)
        || reference.StartsWith('~') || reference.EndsWith(".tar", StringComparison.Ordinal) || reference.EndsWith(".tar.gz", StringComparison.Ordinal)
        || reference.EndsWith(".tgz", StringComparison.Ordinal);

    private static string RequireFile(string file, string description) => File.Exists(file)
        ? file
        : throw new VesselException(VesselErrorReason.NotFound, $"Image source '{description}': no file '{file}'.");

    private static void RejectSelector(string? selector, OciDigest? digest, string description, string kind)
    {
        if (selector is not null || digest is not null)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"Image source '{description}' is {kind}, which holds one image: drop the ':{selector ?? digest.ToString()}' selector.");
        }
    }

    /// <summary>A gzip-compressed docker-archive or oci-archive would otherwise be taken for a root filesystem tarball.</summary>
    private static async Task RejectCompressedImageArchiveAsync(string path, string description, CancellationToken cancellationToken)
    {
        await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        await using var gzip = new GZipStream(file, CompressionMode.Decompress);
        await using var counted = new CountingStream(gzip);
        try
        {
            using var reader = new TarReader(counted, description, bufferSize: 64 << 10);
            for (int i = 0; i < SniffEntries && counted.Count < SniffBytes; i++)
            {
                TarEntry? entry = await reader.NextAsync(cancellationToken);
                if (entry is null)
                {
                    return;
                }
                string name = entry.Name.StartsWith("./", StringComparison.Ordinal) ? entry.Name[2..] : entry.Name;
                if (name is "manifest.json" or "oci-layout" or "index.json" or "repositories" || name.StartsWith("blobs/sha256/", StringComparison.Ordinal))
                {
                    throw new VesselException(VesselErrorReason.Unsupported,
                        $"Image source '{description}' is a gzip-compressed image archive (it holds {name}); decompress it first (gunzip), then pass the .tar.");
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            // Not a tar inside: the layer stream reports that properly when it is read.
        }
    }

    /// <summary>Counts what passes and ends the stream after <see cref="SniffBytes"/>: enough sniffing.</summary>
    private sealed class CountingStream(Stream inner) : ReadOnlyStream
    {
        public long Count { get; private set; }

        public override long Position
        {
            get => Count;
            set => throw new NotSupportedException();
        }

        protected override int ReadCore(Span<byte> buffer)
        {
            int n = Count >= SniffBytes ? 0 : inner.Read(buffer);
            Count += n;
            return n;
        }

        protected override async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        {
            int n = Count >= SniffBytes ? 0 : await inner.ReadAsync(buffer, cancellationToken);
            Count += n;
            return n;
        }
    }
}
