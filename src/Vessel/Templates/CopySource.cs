using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Vessel.Templates;

/// <summary>One entry of a COPY source tree, relative to the source root ("" is the root itself).</summary>
internal sealed record CopyEntry(string RelativePath, string FullPath, CopyEntryKind Kind, int Mode, long Length, string? LinkTarget);

internal enum CopyEntryKind
{
    File,
    Directory,
    Symlink,
}

/// <summary>
/// A COPY step's source in the build context: the tree it names (symlinks recorded, never
/// followed), refused if it escapes the context or holds devices, fifos or sockets, and its
/// hash over sorted paths, kinds, modes, link targets and contents for the phase hash.
/// </summary>
internal sealed class CopySource
{
    public const int MaxEntries = 100_000;

    private CopySource(string root, IReadOnlyList<CopyEntry> entries, string hash)
    {
        Root = root;
        Entries = entries;
        Hash = hash;
    }

    public string Root { get; }

    /// <summary>Sorted by ordinal relative path, so parents come before their children.</summary>
    public IReadOnlyList<CopyEntry> Entries { get; }

    public bool IsDirectory => Entries[0].Kind == CopyEntryKind.Directory;

    public string Hash { get; }

    public static async Task<CopySource> OpenAsync(string contextDirectory, string relative, string stepName, CancellationToken cancellationToken)
    {
        string context = Path.GetFullPath(contextDirectory);
        if (!Directory.Exists(context))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"{stepName}: the build context '{context}' does not exist.");
        }
        string full = Path.GetFullPath(Path.Combine(context, relative));
        if (!IsInside(context, full))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{stepName}: '{relative}' is outside the build context {context}.");
        }
        // No component between the context and the source may be a symlink: it could point anywhere.
        string at = context;
        foreach (string part in Path.GetRelativePath(context, full).Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != "."))
        {
            at = Path.Combine(at, part);
            var info = new FileInfo(at);
            if (!info.Exists && !Directory.Exists(at) && info.LinkTarget is null)
            {
                throw new VesselException(VesselErrorReason.NotFound, $"{stepName}: '{relative}' does not exist in the build context {context}.");
            }
            if (info.LinkTarget is not null && at != full)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"{stepName}: '{Path.GetRelativePath(context, at)}' in the build context is a symlink; Vessel copies symlinks but never follows them.");
            }
        }
        var entries = new List<CopyEntry>();
        Walk(full, string.Empty, entries, stepName);
        entries.Sort((a, b) => string.CompareOrdinal(a.RelativePath, b.RelativePath));

        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 16];
        byte[] len = new byte[8];
        foreach (CopyEntry e in entries)
        {
            Field(h, e.RelativePath);
            Field(h, $"{e.Kind}:{e.Mode:x}:{e.LinkTarget}");
            if (e.Kind == CopyEntryKind.File)
            {
                await using FileStream s = new(e.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
                BinaryPrimitives.WriteInt64LittleEndian(len, s.Length);
                h.AppendData(len);
                int n;
                while ((n = await s.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    h.AppendData(buffer, 0, n);
                }
            }
        }
        return new CopySource(full, entries, Convert.ToHexStringLower(h.GetHashAndReset()));
    }

    private static void Walk(string full, string relative, List<CopyEntry> entries, string stepName)
    {
        if (entries.Count >= MaxEntries)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{stepName}: more than {MaxEntries} entries to copy; copy an archive instead.");
        }
        var info = new FileInfo(full);
        int mode = OperatingSystem.IsWindows() ? 0x1A4 : (int)File.GetUnixFileMode(full) & 0xFFF;
        if (info.LinkTarget is { } target)
        {
            entries.Add(new CopyEntry(relative, full, CopyEntryKind.Symlink, 0x1FF, 0, target));
        }
        else if (Directory.Exists(full))
        {
            entries.Add(new CopyEntry(relative, full, CopyEntryKind.Directory, mode, 0, null));
            foreach (string child in Directory.EnumerateFileSystemEntries(full))
            {
                string name = Path.GetFileName(child);
                if (name.Contains('"', StringComparison.Ordinal) || name.Contains('\n', StringComparison.Ordinal))
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"{stepName}: '{child}' has a quote or newline in its name; rename it.");
                }
                Walk(child, relative.Length == 0 ? name : relative + "/" + name, entries, stepName);
            }
        }
        else if ((info.Attributes & FileAttributes.Device) == 0 && info.Exists && IsRegular(full))
        {
            entries.Add(new CopyEntry(relative, full, CopyEntryKind.File, mode, info.Length, null));
        }
        else
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{stepName}: '{full}' is not a regular file, directory or symlink (devices, fifos and sockets are not copied).");
        }
    }

    private static bool IsRegular(string path)
    {
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static void Field(IncrementalHash h, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(len, bytes.Length);
        h.AppendData(len);
        h.AppendData(bytes);
    }

    private static bool IsInside(string root, string path)
        => path == root || path.StartsWith(root.TrimEnd('/') + "/", StringComparison.Ordinal);
}
