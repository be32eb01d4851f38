using System.Globalization;
using System.Text;
using Vessel.Common;
using Vessel.Rootfs;

namespace Vessel.Templates;

/// <summary>What <c>dumpe2fs -h</c> says about a filesystem.</summary>
internal sealed record Ext4Info(long BlockCount, int BlockSize, long ReservedBlocks, long FreeBlocks)
{
    public long SizeBytes => BlockCount * BlockSize;

    public long ReservedBytes => ReservedBlocks * BlockSize;
}

/// <summary>
/// The host's e2fsprogs on an ext4 image file (a real file or an <see cref="Nbd.NbdFuseFile"/>
/// view of a layer). Nothing is ever mounted: resize2fs, e2fsck, tune2fs and debugfs work on
/// the image directly, and debugfs writes the provisioning files.
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
        return new Ext4Info(Field("Block count"), (int)Field("Block size"), Field("Reserved block count"), Field("Free blocks"));
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
        if (!r.Succeeded)
        {
            string output = r.StandardError + r.StandardOutput;
            VesselErrorReason reason = output.Contains("No space left", StringComparison.Ordinal) ? VesselErrorReason.NoSpace : VesselErrorReason.ToolFailed;
            throw new VesselException(reason, $"resize2fs {image} to {ByteSize.Format(sizeBytes)} exited with {r.ExitCode}: {Tail(output)}");
        }
    }

    /// <summary>Sets the blocks reserved for root with the host's <c>tune2fs -r</c> (seed 000: never inside the guest).</summary>
    public static async Task SetReservedAsync(string image, long reservedBytes, CancellationToken cancellationToken)
    {
        Ext4Info info = await ReadInfoAsync(image, cancellationToken);
        long blocks = reservedBytes / info.BlockSize;
        if (blocks > info.BlockCount / 2)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"{ByteSize.Format(reservedBytes)} of reserved blocks is more than half of the {ByteSize.Format(info.SizeBytes)} filesystem.");
        }
        (await ExternalProcess.RunAsync("tune2fs", ["-r", blocks.ToString(CultureInfo.InvariantCulture), image], cancellationToken, timeout: s_toolTimeout)).EnsureSuccess();
    }

    /// <summary>
    /// Replaces the provisioning files in an image with debugfs, without mounting it: each
    /// file's old entry is removed (so a parent's stale copy goes) and the new content is
    /// written with its mode, root ownership and <paramref name="time"/>. A parent directory
    /// that is not a directory (an image's symlinked /etc, say) is refused, as the image
    /// path refuses it: Vessel never follows an image's symlinks. Every file is read back
    /// afterwards to check its size, because debugfs does not fail its exit code on errors.
    /// </summary>
    public static async Task WriteFilesAsync(string image, IReadOnlyList<ProvisioningFile> files, DateTimeOffset time, string workDirectory, CancellationToken cancellationToken)
    {
        using TempDirectory temp = TempDirectory.Create("prov-", workDirectory);
        var directories = files.SelectMany(f => Parents(f.Path)).Distinct(StringComparer.Ordinal).ToList();
        Dictionary<string, string> types = await StatTypesAsync(image, directories, cancellationToken);
        var script = new StringBuilder();
        foreach (string dir in directories)
        {
            string? type = types.GetValueOrDefault(dir);
            if (type is null)
            {
                // debugfs links a new name into its current directory, so cd to the parent first.
                script.Append(CultureInfo.InvariantCulture, $"cd {Quote(ParentOf(dir))}\nmkdir {Quote(Path.GetFileName(dir))}\n");
                AppendInodeFields(script, dir, 0x41ED, time);
            }
            else if (type != "directory")
            {
                throw new VesselException(VesselErrorReason.InvalidInput,
                    $"the parent template has '{dir}' as a {type}, so Vessel cannot rewrite its provisioning files; Vessel never follows an image's symlinks");
            }
        }
        for (int i = 0; i < files.Count; i++)
        {
            ProvisioningFile file = files[i];
            string source = temp.Combine($"f{i}");
            await File.WriteAllBytesAsync(source, file.Content, cancellationToken);
            script.Append(CultureInfo.InvariantCulture, $"rm {Quote(file.Path)}\n");
            script.Append(CultureInfo.InvariantCulture, $"cd {Quote(ParentOf(file.Path))}\nwrite {Quote(source)} {Quote(Path.GetFileName(file.Path))}\n");
            AppendInodeFields(script, file.Path, 0x8000 | file.Mode, time);
        }
        string commands = temp.Combine("commands");
        await File.WriteAllTextAsync(commands, script.ToString(), cancellationToken);
        (await ExternalProcess.RunAsync("debugfs", ["-w", "-f", commands, image], cancellationToken, timeout: s_toolTimeout)).EnsureSuccess();

        // Read back: every file exists as a regular file of the right size.
        var check = new StringBuilder();
        foreach (ProvisioningFile file in files)
        {
            check.Append(CultureInfo.InvariantCulture, $"stat {Quote(file.Path)}\n");
        }
        string checkFile = temp.Combine("check");
        await File.WriteAllTextAsync(checkFile, check.ToString(), cancellationToken);
        ProcessResult r = (await ExternalProcess.RunAsync("debugfs", ["-f", checkFile, image], cancellationToken, timeout: s_toolTimeout)).EnsureSuccess();
        string[] blocks = r.StandardOutput.Split("Inode: ", StringSplitOptions.RemoveEmptyEntries).Where(b => b.Contains("Type:", StringComparison.Ordinal)).ToArray();
        if (blocks.Length != files.Count)
        {
            throw new VesselException(VesselErrorReason.ToolFailed, $"debugfs did not write every provisioning file into {image}: {Tail(r.StandardError)}");
        }
        for (int i = 0; i < files.Count; i++)
        {
            if (!blocks[i].Contains("Type: regular", StringComparison.Ordinal) || !blocks[i].Contains($"Size: {files[i].Content.Length}\n", StringComparison.Ordinal))
            {
                throw new VesselException(VesselErrorReason.ToolFailed, $"debugfs wrote {files[i].Path} into {image} wrongly: {Tail(blocks[i])}");
            }
        }
    }

    private static void AppendInodeFields(StringBuilder script, string path, int mode, DateTimeOffset time)
    {
        string q = Quote(path);
        string t = time.UtcDateTime.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
        script.Append(CultureInfo.InvariantCulture, $"set_inode_field {q} mode 0{Convert.ToString(mode, 8)}\n");
        script.Append(CultureInfo.InvariantCulture, $"set_inode_field {q} uid 0\nset_inode_field {q} gid 0\n");
        script.Append(CultureInfo.InvariantCulture, $"set_inode_field {q} mtime {t}\nset_inode_field {q} ctime {t}\nset_inode_field {q} atime {t}\n");
    }

    /// <summary>The type debugfs reports for each path ("directory", "regular", "symlink"...), absent when it does not exist.</summary>
    private static async Task<Dictionary<string, string>> StatTypesAsync(string image, IReadOnlyList<string> paths, CancellationToken cancellationToken)
    {
        var types = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string path in paths)
        {
            // One call per path keeps the output unambiguous; there are only a few parents (/etc, /.vessel).
            ProcessResult r = await ExternalProcess.RunAsync("debugfs", ["-R", $"stat {Quote(path)}", image], cancellationToken, timeout: s_toolTimeout);
            string output = r.StandardOutput;
            int at = output.IndexOf("Type: ", StringComparison.Ordinal);
            if (at >= 0)
            {
                types[path] = output[(at + 6)..].Split(' ', '\n', '\t')[0];
            }
        }
        return types;
    }

    private static string ParentOf(string path) => path.LastIndexOf('/') is > 0 and int at ? path[..at] : "/";

    private static IEnumerable<string> Parents(string path)
    {
        string[] parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 1; i < parts.Length; i++)
        {
            yield return "/" + string.Join('/', parts.Take(i));
        }
    }

    /// <summary>debugfs reads its arguments with quotes; Vessel's own paths never contain a quote or newline.</summary>
    private static string Quote(string path)
    {
        if (path.Contains('"', StringComparison.Ordinal) || path.Contains('\n', StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{path}' cannot be passed to debugfs.", nameof(path));
        }
        return $"\"{path}\"";
    }

    private static string Tail(string text) => text.Trim().Length <= 1500 ? text.Trim() : "..." + text.Trim()[^1500..];
}
