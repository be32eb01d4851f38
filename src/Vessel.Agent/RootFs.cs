using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Vessel.Agent.Protocol;

namespace Vessel.Agent;

/// <summary>
/// File operations confined to the sandbox rootfs. Every path is resolved by openat2(2) with
/// RESOLVE_IN_ROOT against a descriptor of the root, so "..", absolute symlinks and magic
/// links (/proc/self/root) all stay inside it; the last component of a path that is changed
/// (removed, renamed, created) is handled relative to its parent without following it.
/// </summary>
internal sealed class RootFs : IDisposable
{
    private const int StatSize = 144;
    private readonly int _rootFd;

    public RootFs(string root)
    {
        Root = root;
        _rootFd = LibC.Open(root, LibC.OPath | LibC.ODirectory | LibC.OCloexec, 0);
        if (_rootFd < 0)
        {
            int errno = Native.LastError;
            throw new AgentErrorException(errno, $"open rootfs {root}: {Native.Describe(errno)}");
        }
    }

    public string Root { get; }

    public SafeFileHandle OpenRead(string path)
    {
        int fd = Open(path, LibC.ORdonly | LibC.OCloexec, 0, "open");
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        FileEntry e = StatFd(fd, Name(path));
        if (e.Kind != FileKind.File)
        {
            handle.Dispose();
            throw new AgentErrorException(LibC.Einval, $"read {path}: not a regular file");
        }
        return handle;
    }

    /// <summary>
    /// Creates a temporary file beside <paramref name="path"/>; <see cref="CommitWrite"/> renames it
    /// into place, so a write that fails half-way never leaves a torn file behind.
    /// </summary>
    public PendingWrite BeginWrite(string path, uint mode)
    {
        (int parentFd, string name) = OpenParent(path, "write");
        string temp = $".{name}.vessel-{Guid.NewGuid():N}";
        if (temp.Length > 255)
        {
            temp = $".vessel-{Guid.NewGuid():N}";
        }
        int fd = Native.OpenAt(parentFd, temp, LibC.OWronly | LibC.OCreat | LibC.OExcl | LibC.ONofollow | LibC.OCloexec, (int)(mode & 0xFFF));
        if (fd < 0)
        {
            int errno = Native.LastError;
            LibC.Close(parentFd);
            throw new AgentErrorException(errno, $"write {path}: {Native.Describe(errno)}");
        }
        // The umask trimmed the mode; set it exactly as asked.
        Native.Fchmod(fd, (int)(mode & 0xFFF));
        return new PendingWrite(parentFd, temp, name, new SafeFileHandle(fd, ownsHandle: true));
    }

    public void CommitWrite(PendingWrite write, string path)
    {
        if (Native.RenameAt(write.ParentFd, write.TempName, write.ParentFd, write.Name) < 0)
        {
            int errno = Native.LastError;
            throw new AgentErrorException(errno, $"write {path}: {Native.Describe(errno)}");
        }
        write.Committed = true;
    }

    public FileEntry Stat(string path)
    {
        if (IsRoot(path))
        {
            return StatAt(_rootFd, string.Empty, "/", LibC.AtEmptyPath);
        }
        (int parentFd, string name) = OpenParent(path, "stat");
        try
        {
            return StatAt(parentFd, name, name, LibC.AtSymlinkNoFollow);
        }
        finally
        {
            LibC.Close(parentFd);
        }
    }

    public IReadOnlyList<FileEntry> List(string path)
    {
        int dirFd = Open(path, LibC.ORdonly | LibC.ODirectory | LibC.OCloexec, 0, "list");
        try
        {
            var entries = new List<FileEntry>();
            foreach (string name in ReadNames(dirFd))
            {
                try
                {
                    entries.Add(StatAt(dirFd, name, name, LibC.AtSymlinkNoFollow));
                }
                catch (AgentErrorException e) when (e.Code == LibC.Enoent)
                {
                    // Removed while we listed.
                }
            }
            entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
            return entries;
        }
        finally
        {
            LibC.Close(dirFd);
        }
    }

    public void Mkdir(string path, uint mode, bool parents)
    {
        if (IsRoot(path))
        {
            if (parents)
            {
                return;
            }
            throw new AgentErrorException(LibC.Eexist, "mkdir /: File exists");
        }
        string[] parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        int start = parents ? 0 : parts.Length - 1;
        for (int i = start; i < parts.Length; i++)
        {
            string prefix = "/" + string.Join('/', parts, 0, i + 1);
            (int parentFd, string name) = OpenParent(prefix, "mkdir");
            try
            {
                if (Native.MkdirAt(parentFd, name, (int)(mode & 0xFFF)) < 0)
                {
                    int errno = Native.LastError;
                    bool isDir = errno == LibC.Eexist && StatAt(parentFd, name, name, LibC.AtSymlinkNoFollow).Kind == FileKind.Directory;
                    if (!(parents && isDir))
                    {
                        throw new AgentErrorException(errno, $"mkdir {prefix}: {Native.Describe(errno)}");
                    }
                }
            }
            finally
            {
                LibC.Close(parentFd);
            }
        }
    }

    public void Remove(string path, bool recursive)
    {
        if (IsRoot(path))
        {
            throw new AgentErrorException(LibC.Ebusy, "remove /: refusing to remove the sandbox root");
        }
        (int parentFd, string name) = OpenParent(path, "remove");
        try
        {
            RemoveAt(parentFd, name, path, recursive);
        }
        finally
        {
            LibC.Close(parentFd);
        }
    }

    public void Rename(string from, string to)
    {
        (int fromFd, string fromName) = OpenParent(from, "rename");
        try
        {
            (int toFd, string toName) = OpenParent(to, "rename");
            try
            {
                if (Native.RenameAt(fromFd, fromName, toFd, toName) < 0)
                {
                    int errno = Native.LastError;
                    throw new AgentErrorException(errno, $"rename {from} to {to}: {Native.Describe(errno)}");
                }
            }
            finally
            {
                LibC.Close(toFd);
            }
        }
        finally
        {
            LibC.Close(fromFd);
        }
    }

    private void RemoveAt(int parentFd, string name, string path, bool recursive)
    {
        FileEntry entry = StatAt(parentFd, name, name, LibC.AtSymlinkNoFollow);
        if (entry.Kind == FileKind.Directory)
        {
            if (recursive)
            {
                int dirFd = Native.OpenAt(parentFd, name, LibC.ORdonly | LibC.ODirectory | LibC.ONofollow | LibC.OCloexec, 0);
                if (dirFd < 0)
                {
                    int errno = Native.LastError;
                    throw new AgentErrorException(errno, $"remove {path}: {Native.Describe(errno)}");
                }
                try
                {
                    foreach (string child in ReadNames(dirFd))
                    {
                        RemoveAt(dirFd, child, path + "/" + child, recursive: true);
                    }
                }
                finally
                {
                    LibC.Close(dirFd);
                }
            }
            Check(Native.UnlinkAt(parentFd, name, LibC.AtRemoveDir), "remove", path);
        }
        else
        {
            Check(Native.UnlinkAt(parentFd, name, 0), "remove", path);
        }
    }

    private int Open(string path, int flags, int mode, string what)
    {
        int fd = Native.OpenInRoot(_rootFd, path, flags, mode);
        if (fd < 0)
        {
            int errno = Native.LastError;
            throw new AgentErrorException(errno, $"{what} {path}: {Native.Describe(errno)}");
        }
        return fd;
    }

    /// <summary>Opens the parent directory (confined) and returns the last component, which must be a real name.</summary>
    private (int ParentFd, string Name) OpenParent(string path, string what)
    {
        string name = Name(path);
        if (name.Length == 0 || name == "." || name == "..")
        {
            throw new AgentErrorException(LibC.Einval, $"{what} {path}: the path must end in a file or directory name");
        }
        string trimmed = path.TrimEnd('/');
        string parent = trimmed[..(trimmed.Length - name.Length)];
        int fd = Open(parent.Length == 0 ? "/" : parent, LibC.OPath | LibC.ODirectory | LibC.OCloexec, 0, what);
        return (fd, name);
    }

    private static string Name(string path)
    {
        string trimmed = path.TrimEnd('/');
        int slash = trimmed.LastIndexOf('/');
        return slash < 0 ? trimmed : trimmed[(slash + 1)..];
    }

    private static bool IsRoot(string path) => path.Trim('/').Length == 0 && path.Length > 0;

    private static void Check(int result, string what, string path)
    {
        if (result < 0)
        {
            int errno = Native.LastError;
            throw new AgentErrorException(errno, $"{what} {path}: {Native.Describe(errno)}");
        }
    }

    private static FileEntry StatFd(int fd, string name) => StatAt(fd, string.Empty, name, LibC.AtEmptyPath);

    private static unsafe FileEntry StatAt(int dirFd, string path, string name, int flags)
    {
        byte* st = stackalloc byte[StatSize];
        if (Native.FstatAt(dirFd, path, st, flags) < 0)
        {
            int errno = Native.LastError;
            throw new AgentErrorException(errno, $"stat {name}: {Native.Describe(errno)}");
        }
        // struct stat on x86-64: st_mode @24, st_uid @28, st_gid @32, st_size @48, st_mtim @88.
        var s = new ReadOnlySpan<byte>(st, StatSize);
        uint mode = BinaryPrimitives.ReadUInt32LittleEndian(s[24..]);
        uint uid = BinaryPrimitives.ReadUInt32LittleEndian(s[28..]);
        uint gid = BinaryPrimitives.ReadUInt32LittleEndian(s[32..]);
        long size = BinaryPrimitives.ReadInt64LittleEndian(s[48..]);
        long mtimeSec = BinaryPrimitives.ReadInt64LittleEndian(s[88..]);
        long mtimeNsec = BinaryPrimitives.ReadInt64LittleEndian(s[96..]);
        FileKind kind = (mode & 0xF000) switch
        {
            0x8000 => FileKind.File,
            0x4000 => FileKind.Directory,
            0xA000 => FileKind.Symlink,
            _ => FileKind.Other,
        };
        string target = string.Empty;
        if (kind == FileKind.Symlink)
        {
            byte* buffer = stackalloc byte[4096];
            nint n = Native.ReadlinkAt(dirFd, path, buffer, 4096);
            if (n > 0)
            {
                target = Encoding.UTF8.GetString(buffer, (int)n);
            }
        }
        return new FileEntry(name, kind, mode & 0xFFF, (ulong)Math.Max(size, 0), (mtimeSec * 1000) + (mtimeNsec / 1_000_000), uid, gid, target);
    }

    private static unsafe List<string> ReadNames(int dirFd)
    {
        var names = new List<string>();
        byte[] buffer = new byte[32 * 1024];
        fixed (byte* b = buffer)
        {
            while (true)
            {
                long n = Native.Getdents64(dirFd, b, buffer.Length);
                if (n < 0)
                {
                    int errno = Native.LastError;
                    throw new AgentErrorException(errno, $"list: {Native.Describe(errno)}");
                }
                if (n == 0)
                {
                    break;
                }
                // struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name.
                int offset = 0;
                while (offset < n)
                {
                    ushort recordLength = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(offset + 16));
                    ReadOnlySpan<byte> nameBytes = buffer.AsSpan(offset + 19, recordLength - 19);
                    int end = nameBytes.IndexOf((byte)0);
                    string name = Encoding.UTF8.GetString(end < 0 ? nameBytes : nameBytes[..end]);
                    if (name is not "." and not "..")
                    {
                        names.Add(name);
                    }
                    offset += recordLength;
                }
            }
        }
        return names;
    }

    public void Dispose() => LibC.Close(_rootFd);
}

/// <summary>A file being written under a temporary name; disposing it without commit removes it.</summary>
internal sealed class PendingWrite(int parentFd, string tempName, string name, SafeFileHandle handle) : IDisposable
{

    public int ParentFd { get; } = parentFd;

    public string TempName { get; } = tempName;

    public string Name { get; } = name;

    public SafeFileHandle Handle { get; } = handle;

    public bool Committed { get; set; }

    public void Dispose()
    {
        Handle.Dispose();
        if (!Committed)
        {
            Native.UnlinkAt(ParentFd, TempName, 0);
        }
        LibC.Close(ParentFd);
    }
}
