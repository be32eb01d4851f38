using System.Globalization;
using System.Text;
using Vessel.Common;
using Vessel.Ext4;
using Vessel.Rootfs;

namespace Vessel.Templates;

/// <summary>
/// Writes into an ext4 image file with the host's <c>debugfs -w</c>, without mounting it: the
/// provisioning files, a COPY step's tree, a WORKDIR. Vessel's own paths only; an image's
/// symlinked parent directory is refused, never followed.
/// </summary>
internal static class DebugfsWriter
{
    private static readonly TimeSpan s_toolTimeout = TimeSpan.FromMinutes(30); // a large COPY under load

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
        AppendMissingDirectories(script, directories, types, time,
            (dir, type) => $"the parent template has '{dir}' as a {type}, so Vessel cannot rewrite its provisioning files; Vessel never follows an image's symlinks");
        for (int i = 0; i < files.Count; i++)
        {
            ProvisioningFile file = files[i];
            string source = temp.Combine($"f{i}");
            await File.WriteAllBytesAsync(source, file.Content, cancellationToken);
            script.Append(CultureInfo.InvariantCulture, $"rm {Quote(file.Path)}\n");
            script.Append(CultureInfo.InvariantCulture, $"cd {Quote(ParentOf(file.Path))}\nwrite {Quote(source)} {Quote(Path.GetFileName(file.Path))}\n");
            AppendInodeFields(script, file.Path, 0x8000 | file.Mode, time);
        }
        await RunScriptAsync(image, script.ToString(), write: true, workDirectory, cancellationToken);

        // Read back: every file exists as a regular file of the right size.
        string check = string.Concat(files.Select(f => $"stat {Quote(f.Path)}\n"));
        ProcessResult r = await RunScriptAsync(image, check, write: false, workDirectory, cancellationToken);
        string[] blocks = r.StandardOutput.Split("Inode: ", StringSplitOptions.RemoveEmptyEntries).Where(b => b.Contains("Type:", StringComparison.Ordinal)).ToArray();
        if (blocks.Length != files.Count)
        {
            throw new VesselException(VesselErrorReason.ToolFailed, $"debugfs did not write every provisioning file into {image}: {Ext4Tools.Tail(r.StandardError)}");
        }
        for (int i = 0; i < files.Count; i++)
        {
            if (!blocks[i].Contains("Type: regular", StringComparison.Ordinal) || !blocks[i].Contains($"Size: {files[i].Content.Length}\n", StringComparison.Ordinal))
            {
                throw new VesselException(VesselErrorReason.ToolFailed, $"debugfs wrote {files[i].Path} into {image} wrongly: {Ext4Tools.Tail(blocks[i])}");
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

    /// <summary>The type debugfs reports for each path ("directory", "regular", "symlink"...), absent when it does not exist. One debugfs run.</summary>
    public static async Task<Dictionary<string, string>> StatTypesAsync(string image, IReadOnlyList<string> paths, CancellationToken cancellationToken)
    {
        var types = new Dictionary<string, string>(StringComparer.Ordinal);
        if (paths.Count == 0)
        {
            return types;
        }
        ProcessResult r = await RunScriptAsync(image, string.Concat(paths.Select(p => $"stat {Quote(p)}\n")), write: false, parent: null, cancellationToken);
        // debugfs echoes each command as "debugfs: stat PATH"; the stat output follows it.
        string? current = null;
        foreach (string line in r.StandardOutput.Split('\n'))
        {
            if (line.StartsWith("debugfs: stat ", StringComparison.Ordinal))
            {
                current = line["debugfs: stat ".Length..].Trim().Trim('"');
            }
            else if (current is not null && line.StartsWith("Inode: ", StringComparison.Ordinal))
            {
                int at = line.IndexOf("Type: ", StringComparison.Ordinal);
                if (at >= 0)
                {
                    types[current] = line[(at + 6)..].Split(' ', '\t')[0];
                }
            }
        }
        return types;
    }

    /// <summary>
    /// COPY without mounting: the tree of <paramref name="source"/> written under
    /// <paramref name="destination"/> with debugfs (Docker's rules: a directory's contents go
    /// into the destination; a file goes to the destination path, or into it when it ends
    /// with '/' or is a directory). Missing parents are created; entries are owned by root and
    /// keep their modes; existing files are replaced. Every written entry is checked afterwards.
    /// </summary>
    public static async Task CopyTreeAsync(string image, CopySource source, string destination, DateTimeOffset time, CancellationToken cancellationToken)
    {
        string root = destination.TrimEnd('/');
        if (root.Length == 0)
        {
            root = "/";
        }
        if (!source.IsDirectory)
        {
            Dictionary<string, string> existing = await StatTypesAsync(image, [root], cancellationToken);
            if (destination.EndsWith('/') || existing.GetValueOrDefault(root) == "directory")
            {
                root = Join(root, Path.GetFileName(source.Root));
            }
        }
        var targets = source.Entries.Select(e => (Entry: e, Path: e.RelativePath.Length == 0 ? root : Join(root, e.RelativePath))).ToList();
        var parents = Parents(targets[0].Path).ToList();
        var all = parents.Concat(targets.Select(t => t.Path)).Distinct(StringComparer.Ordinal).ToList();
        Dictionary<string, string> types = await StatTypesAsync(image, all, cancellationToken);
        var script = new StringBuilder();
        AppendMissingDirectories(script, parents, types, time,
            (dir, type) => $"COPY to {destination}: '{dir}' in the image is a {type}, not a directory; Vessel never follows symlinks in the image.");
        foreach ((CopyEntry e, string path) in targets)
        {
            string? type = types.GetValueOrDefault(path);
            string name = Quote(Path.GetFileName(path));
            string cd = $"cd {Quote(ParentOf(path))}\n";
            switch (e.Kind)
            {
                case CopyEntryKind.Directory:
                    if (type is not null and not "directory")
                    {
                        script.Append(CultureInfo.InvariantCulture, $"{cd}rm {name}\n");
                    }
                    if (type != "directory")
                    {
                        script.Append(CultureInfo.InvariantCulture, $"{cd}mkdir {name}\n");
                    }
                    AppendInodeFields(script, path, 0x4000 | e.Mode, time);
                    break;
                case CopyEntryKind.File:
                    if (type == "directory")
                    {
                        throw new VesselException(VesselErrorReason.InvalidInput, $"COPY: '{path}' is a directory in the image; cannot replace it with the file {e.FullPath}.");
                    }
                    script.Append(CultureInfo.InvariantCulture, $"{cd}{(type is null ? string.Empty : $"rm {name}\n")}write {Quote(e.FullPath)} {name}\n");
                    AppendInodeFields(script, path, 0x8000 | e.Mode, time);
                    break;
                default:
                    if (type == "directory")
                    {
                        throw new VesselException(VesselErrorReason.InvalidInput, $"COPY: '{path}' is a directory in the image; cannot replace it with a symlink.");
                    }
                    script.Append(CultureInfo.InvariantCulture, $"{cd}{(type is null ? string.Empty : $"rm {name}\n")}symlink {name} {Quote(e.LinkTarget!)}\n");
                    script.Append(CultureInfo.InvariantCulture, $"set_inode_field {Quote(path)} uid 0\nset_inode_field {Quote(path)} gid 0\n");
                    break;
            }
        }
        await RunScriptAsync(image, script.ToString(), write: true, parent: null, cancellationToken);
        Dictionary<string, string> after = await StatTypesAsync(image, [.. targets.Select(t => t.Path)], cancellationToken);
        foreach ((CopyEntry e, string path) in targets)
        {
            string expected = e.Kind switch { CopyEntryKind.Directory => "directory", CopyEntryKind.File => "regular", _ => "symlink" };
            if (after.GetValueOrDefault(path) != expected)
            {
                throw new VesselException(VesselErrorReason.ToolFailed, $"COPY: debugfs did not create {path} as a {expected} (found {after.GetValueOrDefault(path) ?? "nothing"}).");
            }
        }
    }

    /// <summary>Creates a directory and its missing parents (WORKDIR), owned by root, mode 0755.</summary>
    public static async Task MakeDirectoriesAsync(string image, string path, DateTimeOffset time, CancellationToken cancellationToken)
    {
        var chain = Parents(path).Append(path.TrimEnd('/')).Where(p => p.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        Dictionary<string, string> types = await StatTypesAsync(image, chain, cancellationToken);
        var script = new StringBuilder();
        AppendMissingDirectories(script, chain, types, time, (dir, type) => $"WORKDIR {path}: '{dir}' in the image is a {type}, not a directory.");
        if (script.Length == 0)
        {
            return;
        }
        await RunScriptAsync(image, script.ToString(), write: true, parent: null, cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="script"/> as one debugfs command file, kept in a temporary directory
    /// under <paramref name="parent"/> (default: the system's) that is gone afterwards; the image
    /// is opened for writing only when <paramref name="write"/>.
    /// </summary>
    private static async Task<ProcessResult> RunScriptAsync(string image, string script, bool write, string? parent, CancellationToken cancellationToken)
    {
        using TempDirectory temp = TempDirectory.Create("debugfs-", parent);
        string commands = temp.Combine("commands");
        await File.WriteAllTextAsync(commands, script, cancellationToken);
        string[] arguments = write ? ["-w", "-f", commands, image] : ["-f", commands, image];
        return (await ExternalProcess.RunAsync("debugfs", arguments, cancellationToken, timeout: s_toolTimeout)).EnsureSuccess();
    }

    /// <summary>
    /// Appends the commands that create each of <paramref name="dirs"/> (parents first) that the
    /// image lacks, owned by root, mode 0755; one that exists as anything but a directory is
    /// refused with <paramref name="notDirectory"/>(path, type) (never followed: it may be a symlink).
    /// </summary>
    private static void AppendMissingDirectories(StringBuilder script, IEnumerable<string> dirs, Dictionary<string, string> types, DateTimeOffset time, Func<string, string, string> notDirectory)
    {
        foreach (string dir in dirs)
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
                throw new VesselException(VesselErrorReason.InvalidInput, notDirectory(dir, type));
            }
        }
    }

    private static string Join(string dir, string name) => dir == "/" ? "/" + name : dir + "/" + name;

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

}
