using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vessel.Common;
using Vessel.Ext4;
using Vessel.Oci;

namespace Vessel.Rootfs;

public sealed record RootfsBuildOptions
{
    /// <summary>Fixed image size in bytes; null derives it from the content plus <see cref="FreeBytes"/>.</summary>
    public long? SizeBytes { get; init; }

    public long FreeBytes { get; init; } = 512L << 20;
    public long ReservedBytes { get; init; }
    public string Hostname { get; init; } = "vessel";
    public string? BusyboxPath { get; init; }

    /// <summary>
    /// False: the image's files only, without Vessel's provisioning files (a pod's read-only
    /// lower, where each container's overlay root is the image as it is).
    /// </summary>
    public bool Provision { get; init; } = true;

    public TimeProvider Time { get; init; } = TimeProvider.System;
}

/// <summary>Progress of a build: which layer, and how many uncompressed bytes of it were applied.</summary>
public readonly record struct RootfsProgress(int Layer, int Layers, long LayerBytes, long CompressedSize);

/// <summary>What a build produced; also written next to the image as <c>OUT.json</c>.</summary>
public sealed record RootfsBuildResult(
    string Path,
    string Source,
    string? ManifestDigest,
    string ContentDigest,
    ImageConfig Config,
    int Layers,
    long Entries,
    Ext4Summary Filesystem,
    int ProvisioningVersion,
    TimeSpan Elapsed);

/// <summary>
/// Image to bootable ext4 in one streaming pass: layers are read once, in order, straight
/// from the source into the image file; nothing is extracted on the host, nothing is
/// mounted, no root needed. The image appears at its path only when complete (written
/// under a temporary name, flushed, renamed); a failed build leaves no output.
/// </summary>
public static class RootfsBuilder
{
    public static async Task<RootfsBuildResult> BuildAsync(
        IImageSource source, string outputPath, RootfsBuildOptions options, IProgress<RootfsProgress>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        // Both paths are checked before any work: a device, FIFO, directory or symlink at either is refused.
        using OutputFile output = OutputFile.Begin(outputPath);
        outputPath = output.Path;
        OutputFile.Check(MetadataPath(outputPath), "metadata file");
        // A plain tarball is hashed as it streams rather than read once more up front.
        var streaming = source as IStreamingDigestImageSource;
        ResolvedImage image = streaming is not null
            ? await streaming.ResolveForStreamingAsync(cancellationToken)
            : await source.ResolveAsync(cancellationToken);
        TimeSpan resolved = clock.Elapsed;
        if (!string.Equals(image.Config.Os, "linux", StringComparison.Ordinal))
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"{source.Description} is a {image.Config.Os} image; Vessel runs Linux images");
        }

        DateTimeOffset now = options.Time.GetUtcNow();
        var writerOptions = new Ext4WriterOptions
        {
            SizeBytes = options.SizeBytes,
            FreeBytes = options.FreeBytes,
            ReservedBytes = options.ReservedBytes,
            Timestamp = now,
            Label = "vessel-rootfs",
        };
        IReadOnlyList<ProvisioningFile> files = Provisioning.Files(new ProvisioningOptions
        {
            Hostname = options.Hostname,
            Config = image.Config,
            BusyboxPath = options.BusyboxPath,
        });

        Ext4Summary summary;
        long entries;
        string contentDigest;
        using (var writer = new Ext4Writer(output.PartialPath, writerOptions))
        {
            var applier = new LayerApplier(writer);
            for (int i = 0; i < image.Layers.Count; i++)
            {
                LayerDescriptor layer = image.Layers[i];
                string digest = layer.Digest.Length > 0 ? $" ({Short(layer.Digest)})" : string.Empty;
                string context = $"layer {i + 1} of {image.Layers.Count}{digest} of {source.Description}";
                // Decompression and digest checks run on another core while this one writes.
                await using Stream stream = new ReadAheadStream(await source.OpenLayerAsync(i, cancellationToken));
                int index = i;
                await applier.ApplyAsync(stream, i + 1, context,
                    bytes => progress?.Report(new RootfsProgress(index + 1, image.Layers.Count, bytes, layer.Size)), cancellationToken);
            }
            contentDigest = image.ContentDigest.Length > 0 ? image.ContentDigest
                : streaming?.StreamedContentDigest ?? throw new InvalidOperationException($"{source.Description}: no content digest after streaming its layers");
            // Derived from the content so that the same image gives the same filesystem identity.
            byte[] identity = SHA256.HashData(Encoding.UTF8.GetBytes(contentDigest + "|vessel-rootfs|" + Provisioning.Version));
            writer.SetIdentity(new Guid(identity.AsSpan(0, 16)), identity[16..32]);
            if (options.Provision)
            {
                Provisioning.AddTo(writer, files, now);
            }
            TimeSpan applied = clock.Elapsed;
            TimeSpan waited = writer.WaitedForDisk;
            summary = writer.Finish();
            entries = applier.Entries;
            if (VesselSettings.Current.Profile)
            {
                // A diagnostic for benchmarks (docs/BENCHMARKS.md): where the time of a build went.
                Console.Error.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"rootfs profile: resolved {resolved.TotalSeconds:F3} s, layers applied {applied.TotalSeconds:F3} s (waited for the disk {waited.TotalSeconds:F3} s), finished {clock.Elapsed.TotalSeconds:F3} s (waited {writer.WaitedForDisk.TotalSeconds:F3} s), cpu {Environment.CpuUsage.TotalTime.TotalSeconds:F3} s, allocated {GC.GetTotalAllocatedBytes() >> 20} MiB, gc {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)} ({GC.GetTotalPauseDuration().TotalSeconds:F3} s paused), jit {System.Runtime.JitInfo.GetCompiledMethodCount()} methods {System.Runtime.JitInfo.GetCompilationTime().TotalSeconds:F3} s"));
            }
        }

        var result = new RootfsBuildResult(outputPath, source.Description, image.ManifestDigest, contentDigest, image.Config,
            image.Layers.Count, entries, summary, Provisioning.Version, clock.Elapsed);
        cancellationToken.ThrowIfCancellationRequested();
        output.Commit();
        await OutputFile.WriteAllBytesAsync(MetadataPath(outputPath), JsonSerializer.SerializeToUtf8Bytes(result, RootfsJsonContext.Default.RootfsBuildResult),
            "metadata file", CancellationToken.None);
        return result;
    }

    /// <summary>Where a build's metadata goes: <c>OUTPUT.json</c>.</summary>
    public static string MetadataPath(string outputPath) => outputPath + ".json";

    private static string Short(string digest) => digest.Length > 19 ? digest[..19] : digest;
}

/// <summary>/.vessel/provision.json in every image.</summary>
internal sealed record ProvisionInfo(int Version, string Hostname);

/// <summary>OUT.json written without reflection: a build's JSON costs no start-up JIT.</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(RootfsBuildResult))]
[System.Text.Json.Serialization.JsonSerializable(typeof(ImageConfig))]
[System.Text.Json.Serialization.JsonSerializable(typeof(ProvisionInfo))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class RootfsJsonContext : System.Text.Json.Serialization.JsonSerializerContext
{
}
