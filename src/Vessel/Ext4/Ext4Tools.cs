using System.Globalization;
using Vessel.Common;

namespace Vessel.Ext4;

/// <summary>What <c>dumpe2fs -h</c> says about a filesystem.</summary>
internal sealed record Ext4Info(long BlockCount, int BlockSize, long ReservedBlocks, long FreeBlocks)
{
    /// <summary>State "clean" and no journal to replay: the filesystem was last unmounted (or written by a tool) consistently.</summary>
    public bool Clean { get; init; }

    public long SizeBytes => BlockCount * BlockSize;

    public long ReservedBytes => ReservedBlocks * BlockSize;
}

/// <summary>
/// The one wrapper of the host's e2fsprogs (dumpe2fs, e2fsck, resize2fs, tune2fs) on an ext4
/// image file (a real file or an <see cref="Nbd.NbdFuseFile"/> view of a layer). Nothing is ever
/// mounted. Writes of files into an image with debugfs are Templates' <c>DebugfsWriter</c>.
/// </summary>
internal static class Ext4Tools
{
    private static readonly TimeSpan s_toolTimeout = TimeSpan.FromMinutes(30); // a full check of a multi-GiB image under load

    public static async Task<Ext4Info> ReadInfoAsync(string image, CancellationToken cancellationToken)
    {
        ProcessResult r = (await ExternalProcess.RunAsync("dumpe2fs", ["-h", image], cancellationToken, timeout: s_toolTimeout)).EnsureSuccess();
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in r.StandardOutput.Split('\n'))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                fields.TryAdd(line[..colon].Trim(), line[(colon + 1)..].Trim());
            }
        }
        long Field(string name) => fields.TryGetValue(name, out string? v) && long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long n)
            ? n
            : throw new VesselException(VesselErrorReason.Corrupt, $"{image}: dumpe2fs -h gave no '{name}'; is it an ext4 image?");
        bool clean = fields.GetValueOrDefault("Filesystem state") == "clean"
            && !(fields.GetValueOrDefault("Filesystem features") ?? string.Empty).Split(' ').Contains("needs_recovery");
        return new Ext4Info(Field("Block count"), (int)Field("Block size"), Field("Reserved block count"), Field("Free blocks")) { Clean = clean };
    }

    /// <summary><c>e2fsck -fy</c>: repairs what it can; exit 0 or 1 (corrected) is a clean result, anything else fails.</summary>
    public static async Task CheckAsync(string image, CancellationToken cancellationToken)
    {
        ProcessResult r = await ExternalProcess.RunAsync("e2fsck", ["-fy", image], cancellationToken, timeout: s_toolTimeout);
        if (r.ExitCode is not (0 or 1))
        {
            throw new VesselException(VesselErrorReason.Corrupt,
                $"e2fsck -fy {image} exited with {r.ExitCode}: the filesystem has errors it cannot fix. {Tail(r.StandardOutput + r.StandardError)}");
        }
    }

    /// <summary>The smallest size the filesystem can be shrunk to, in bytes (<c>resize2fs -P</c>).</summary>
    public static async Task<long> MinimumSizeAsync(string image, int blockSize, CancellationToken cancellationToken)
    {
        ProcessResult r = (await ExternalProcess.RunAsync("resize2fs", ["-P", image], cancellationToken, timeout: s_toolTimeout)).EnsureSuccess();
        const string Marker = "Estimated minimum size of the filesystem:";
        foreach (string line in r.StandardOutput.Split('\n'))
        {
            int at = line.IndexOf(Marker, StringComparison.Ordinal);
            if (at >= 0 && long.TryParse(line[(at + Marker.Length)..].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long blocks))
            {
                return blocks * blockSize;
            }
        }
        throw new VesselException(VesselErrorReason.ToolFailed, $"resize2fs -P {image} printed no minimum size: {Tail(r.StandardOutput)}");
    }

    /// <summary>Resizes to exactly <paramref name="sizeBytes"/> (grow or shrink; a multiple of 1 KiB).</summary>
    public static async Task ResizeAsync(string image, long sizeBytes, CancellationToken cancellationToken)
    {
        ProcessResult r = await ExternalProcess.RunAsync("resize2fs", [image, $"{sizeBytes / 1024}K"], cancellationToken, timeout: s_toolTimeout);
        if (!r.Succeeded && (r.StandardError + r.StandardOutput).Contains("Please run 'e2fsck -f", StringComparison.Ordinal))
        {
            // resize2fs's own guard (mounted since its last check, or errors): check, then once more.
            await CheckAsync(image, cancellationToken);
            r = await ExternalProcess.RunAsync("resize2fs", [image, $"{sizeBytes / 1024}K"], cancellationToken, timeout: s_toolTimeout);
        }
        if (!r.Succeeded)
        {
            string output = r.StandardError + r.StandardOutput;
            VesselErrorReason reason = output.Contains("No space left", StringComparison.Ordinal) ? VesselErrorReason.NoSpace : VesselErrorReason.ToolFailed;
            throw new VesselException(reason, $"resize2fs {image} to {ByteSize.Format(sizeBytes)} exited with {r.ExitCode}: {Tail(output)}");
        }
    }

    /// <summary>Sets the blocks reserved for root with the host's <c>tune2fs -r</c> (seed 000: never inside the guest).</summary>
    /// <summary>
    /// Sets the blocks reserved for root with the host's <c>tune2fs -r</c>: the one rule for every
    /// path (a sandbox's pre-boot hook and a template's three call sites). The request is rounded
    /// up to whole blocks (at least what was asked is reserved), more than half of the filesystem
    /// is refused, and an image that already has the value is not written (a layer stays clean).
    /// </summary>
    public static async Task SetReservedAsync(string image, long reservedBytes, CancellationToken cancellationToken)
    {
        if (reservedBytes < 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "Reserved space cannot be negative.");
        }
        Ext4Info info = await ReadInfoAsync(image, cancellationToken);
        long blocks = ReservedBlockCount(reservedBytes, info.BlockSize);
        if (blocks > info.BlockCount / 2)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"Reserving {ByteSize.Format(reservedBytes)} would take over half of the {ByteSize.Format(info.SizeBytes)} filesystem: grow the disk or reserve less.");
        }
        if (info.ReservedBlocks == blocks)
        {
            return; // already right: writing the superblock again would only dirty the layer
        }
        (await ExternalProcess.RunAsync("tune2fs", ["-r", blocks.ToString(CultureInfo.InvariantCulture), image], cancellationToken, timeout: s_toolTimeout)).EnsureSuccess();
    }

    /// <summary>Whole blocks that hold at least <paramref name="reservedBytes"/>.</summary>
    public static long ReservedBlockCount(long reservedBytes, int blockSize) => (reservedBytes + blockSize - 1) / blockSize;

    internal static string Tail(string text) => text.Trim().Length <= 1500 ? text.Trim() : "..." + text.Trim()[^1500..];
}
