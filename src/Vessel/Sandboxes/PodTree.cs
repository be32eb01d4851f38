using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Vessel.Common;
using Vessel.Ext4;
using Vessel.Interop;
using Vessel.Rootfs;

namespace Vessel.Sandboxes;

/// <summary>
/// One image of a virtio-fs pod as an unpacked, read-only directory in the home's
/// <c>images/trees/</c>, named by the image's content digest and shared by every sandbox that
/// uses the image. It is unpacked once from the image's <see cref="PodLower"/> ext4 (so the
/// layer rules are <see cref="LayerApplier"/>'s: whiteouts applied, hostile names refused, the
/// image's symlinks never followed) with e2fsprogs' <c>debugfs rdump</c>, which creates each
/// entry inside the directory it has just created; owners and modes are kept (setuid, setgid
/// and sticky bits restored after the dump), hard links are made again after the dump (rdump
/// writes each name as a copy) and extended attributes, which rdump drops, are read from the
/// image's inodes (<see cref="Ext4XattrReader"/>) and set again. It is written under a
/// temporary name and renamed when complete.
/// </summary>
/// <param name="Path">The tree's directory.</param>
internal sealed record PodTree(string Id, string Path)
{
    private const string TemporaryPrefix = ".tmp-";
    private const uint RootInode = 2;

    /// <summary>The file in a live sandbox's directory that lists the trees it serves, one path a line.</summary>
    public const string UsedTreesFile = "trees";

    /// <summary>The tree of <paramref name="lower"/>, unpacked unless it already is (a lock per digest across processes).</summary>
    public static async Task<PodTree> EnsureAsync(VesselHome home, PodLower lower, CancellationToken cancellationToken)
    {
        string hex = lower.ContentDigest.StartsWith("sha256:", StringComparison.Ordinal) ? lower.ContentDigest["sha256:".Length..] : lower.ContentDigest;
        string path = home.ImageTree(hex);
        if (Directory.Exists(path))
        {
            return new PodTree(lower.Id, path);
        }
        Directory.CreateDirectory(home.ImageTrees);
        await using FileStream held = await RootfsCache.LockAsync(path + ".lock", cancellationToken);
        if (Directory.Exists(path))
        {
            return new PodTree(lower.Id, path);
        }
        string partial = System.IO.Path.Combine(home.ImageTrees, $"{TemporaryPrefix}{hex}-{ProcessOwner.Current}");
        SandboxManager.DeleteDirectory(partial);
        Directory.CreateDirectory(partial);
        try
        {
            await DumpAsync(lower.Path, partial, cancellationToken);
            await RestoreMetadataAsync(lower.Path, partial, cancellationToken);
            Directory.Move(partial, path);
        }
        catch
        {
            SandboxManager.DeleteDirectory(partial);
            throw;
        }
        return new PodTree(lower.Id, path);
    }

    /// <summary>
    /// The trees of <paramref name="home"/> that nothing uses or unpacks: neither a live sandbox
    /// (its <see cref="UsedTreesFile"/>) nor an unpack in progress (its lock, taken here and
    /// returned held, so the caller removes the tree before anyone can start on it). Partial unpacks
    /// of dead processes are listed too (their lock is null).
    /// </summary>
    public static async Task<IReadOnlyList<(string Path, FileStream? Lock)>> TakeUnusedAsync(VesselHome home, CancellationToken cancellationToken)
    {
        var taken = new List<(string, FileStream?)>();
        if (!Directory.Exists(home.ImageTrees))
        {
            return taken;
        }
        HashSet<string> used = await UsedAsync(home, cancellationToken);
        foreach (string dir in Directory.EnumerateDirectories(home.ImageTrees))
        {
            string name = System.IO.Path.GetFileName(dir);
            if (name.StartsWith(TemporaryPrefix, StringComparison.Ordinal))
            {
                int dash = name.LastIndexOf('-');
                int before = dash > 0 ? name.LastIndexOf('-', dash - 1) : -1;
                if (before > 0 && !ProcessOwner.IsAlive(name[(before + 1)..]))
                {
                    taken.Add((dir, null));
                }
                continue;
            }
            if (used.Contains(dir))
            {
                continue;
            }
            try
            {
                taken.Add((dir, new FileStream(dir + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)));
            }
            catch (IOException)
            {
                // Being unpacked again by a concurrent run: in use.
            }
        }
        return taken;
    }

    /// <summary>The trees that live sandboxes serve (each lists its own in its directory).</summary>
    private static async Task<HashSet<string>> UsedAsync(VesselHome home, CancellationToken cancellationToken)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        if (!Directory.Exists(home.Sandboxes))
        {
            return used;
        }
        HashSet<string> dead = [.. await SandboxManager.FindLeftoversAsync(home.Root, cancellationToken)];
        foreach (string dir in Directory.EnumerateDirectories(home.Sandboxes, "sb-*").Where(d => !dead.Contains(d)))
        {
            string list = System.IO.Path.Combine(dir, UsedTreesFile);
            if (File.Exists(list))
            {
                used.UnionWith((await File.ReadAllLinesAsync(list, cancellationToken)).Where(l => l.Length > 0));
            }
        }
        return used;
    }

    private static async Task DumpAsync(string image, string destination, CancellationToken cancellationToken)
    {
        ProcessResult r = await ExternalProcess.RunAsync("debugfs", ["-R", $"rdump / \"{destination}\"", image], cancellationToken, timeout: TimeSpan.FromMinutes(30));
        string[] problems = DebugfsProblems(r.StandardError);
        if (!r.Succeeded || problems.Length > 0)
        {
            throw new VesselException(VesselErrorReason.ToolFailed, $"debugfs could not unpack {image} into {destination}: {string.Join("; ", problems.Take(5))} (exit {r.ExitCode})");
        }
    }

    /// <summary>
    /// What rdump loses: it sets the mode before the owner, and the chown clears setuid and setgid;
    /// it writes every name of a hard-linked file as a copy; and it drops extended attributes.
    /// Lists every directory once more (<c>ls -p</c>: <c>/INODE/MODE/UID/GID/NAME/SIZE/</c>), sets
    /// the mode again where it has bits over 0777, replaces each later name of a regular file's
    /// inode by a hard link to its first, and sets each inode's extended attributes. Symlinks are
    /// never followed (the directories come from the host tree; attributes go on the link itself).
    /// </summary>
    private static async Task RestoreMetadataAsync(string image, string root, CancellationToken cancellationToken)
    {
        var directories = new List<string> { string.Empty };
        for (int i = 0; i < directories.Count; i++)
        {
            foreach (DirectoryInfo d in new DirectoryInfo(System.IO.Path.Combine(root, directories[i])).EnumerateDirectories())
            {
                if (d.LinkTarget is null)
                {
                    directories.Add(System.IO.Path.GetRelativePath(root, d.FullName));
                }
            }
        }
        string commands = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(root)!, System.IO.Path.GetFileName(root) + ".cmds");
        var script = new StringBuilder();
        var listed = new List<string>();
        foreach (string d in directories.Where(d => !d.Contains('"', StringComparison.Ordinal) && !d.Contains('\n', StringComparison.Ordinal)))
        {
            script.Append("ls -p \"/").Append(d).Append("\"\n");
            listed.Add(d);
        }
        await File.WriteAllTextAsync(commands, script.ToString(), cancellationToken);
        try
        {
            ProcessResult r = (await ExternalProcess.RunAsync("debugfs", ["-f", commands, image], cancellationToken, timeout: TimeSpan.FromMinutes(10))).EnsureSuccess();
            using Ext4XattrReader xattrs = Ext4XattrReader.Open(image);
            CopyXattrs(xattrs, RootInode, root, 0x4000);
            string? directory = null;
            int next = 0;
            var firstNames = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string line in r.StandardOutput.Split('\n'))
            {
                if (line.StartsWith("debugfs: ls -p", StringComparison.Ordinal))
                {
                    directory = next < listed.Count ? listed[next++] : null;
                    continue;
                }
                string[] f = line.Split('/');
                if (directory is null || f.Length != 8 || f[2].Length == 0 || f[2].Any(c => c is < '0' or > '7') || f[5] is "." or ".." || f[1] == "0")
                {
                    continue;
                }
                int bits = Convert.ToInt32(f[2], 8);
                string host = System.IO.Path.Combine(root, directory, f[5]);
                if ((bits & 0xF000) == 0x8000 && UnixFile.IsRegularFile(host) && !firstNames.TryAdd(f[1], host))
                {
                    Relink(firstNames[f[1]], host);
                }
                if ((bits & 0xE00) != 0 && (bits & 0xF000) is 0x8000 or 0x4000 && OperatingSystem.IsLinux() && new FileInfo(host).LinkTarget is null)
                {
                    File.SetUnixFileMode(host, (UnixFileMode)(bits & 0xFFF));
                }
                CopyXattrs(xattrs, uint.Parse(f[1], CultureInfo.InvariantCulture), host, bits);
            }
        }
        finally
        {
            File.Delete(commands);
        }
    }

    /// <summary>
    /// Sets the extended attributes that <paramref name="inode"/> has in the image on
    /// <paramref name="host"/> itself (<c>lsetxattr</c>: a symlink is never followed; its parent
    /// directories are the tree's own). Skipped, as the host allows no more: <c>user.*</c> on what
    /// is neither a file nor a directory (the kernel refuses it there, and hides it in the block
    /// lower too), and a namespace the host's filesystem does not support (EOPNOTSUPP).
    /// </summary>
    private static unsafe void CopyXattrs(Ext4XattrReader reader, uint inode, string host, int bits)
    {
        bool fileOrDirectory = (bits & 0xF000) is 0x8000 or 0x4000;
        foreach ((string name, byte[] value) in reader.Read(inode))
        {
            if (!fileOrDirectory && name.StartsWith("user.", StringComparison.Ordinal))
            {
                continue;
            }
            int rc;
            fixed (byte* p = value)
            {
                rc = LibC.Lsetxattr(host, name, p, (nuint)value.Length, 0);
            }
            int errno = rc == 0 ? 0 : Marshal.GetLastPInvokeError();
            if (rc != 0 && errno != LibC.Eopnotsupp)
            {
                throw new VesselException(VesselErrorReason.ToolFailed, $"Cannot set the extended attribute {name} of {host} in an image tree: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
            }
        }
    }

    /// <summary>Replaces the copy at <paramref name="copy"/> by a hard link to <paramref name="first"/> (both regular files inside the partial tree).</summary>
    private static void Relink(string first, string copy)
    {
        // The directory keeps the mtime rdump gave it from the image.
        string directory = System.IO.Path.GetDirectoryName(copy)!;
        DateTime mtime = Directory.GetLastWriteTimeUtc(directory);
        File.Delete(copy);
        if (LibC.Link(first, copy) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new VesselException(VesselErrorReason.ToolFailed, $"Cannot hard-link {copy} to {first} in an image tree: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
        }
        Directory.SetLastWriteTimeUtc(directory, mtime);
    }

    private static string[] DebugfsProblems(string stderr) => stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Where(l => !l.StartsWith("debugfs ", StringComparison.Ordinal)).ToArray();
}
