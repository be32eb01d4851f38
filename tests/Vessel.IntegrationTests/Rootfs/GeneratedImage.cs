using System.Formats.Tar;
using Vessel.Ext4;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// Writes a large rootfs tarball with System.Formats.Tar and describes, entry by entry, what
/// an image built from it must contain (the oracle is the generator itself: nothing is
/// extracted to the host). The tarball lands as a sparse file: zero blocks are skipped with a
/// seek, so a multi-GiB file of mostly zeros costs only its non-zero blocks on disk.
/// </summary>
internal sealed class GeneratedImage
{
    private const long BaseTime = 1_600_000_000; // 2020-09-13

    private readonly List<TreeEntry> _entries = [];
    private ulong _nextInode = 1;

    /// <summary>The number of regular files, hard links and symlinks written (directories not counted).</summary>
    public int FileCount { get; private set; }

    public TreeSnapshot Expected => TreeSnapshot.FromEntries("generated tarball", _entries);

    /// <summary>
    /// Writes <paramref name="path"/>: <paramref name="wideDirectoryFiles"/> files in one
    /// directory, <paramref name="treeFiles"/> spread over 100 directories, symlinks, hard
    /// links, xattrs, and (when <paramref name="bigFileSize"/> &gt; 0) one file of that size
    /// whose non-zero blocks sit at its start, around the 4 GiB mark and at its end.
    /// </summary>
    public static GeneratedImage Write(string path, int wideDirectoryFiles, int treeFiles, long bigFileSize)
    {
        var image = new GeneratedImage();
        using (var file = new SparseWriteStream(path))
        using (var tar = new TarWriter(file, TarEntryFormat.Pax, leaveOpen: true))
        {
            image.AddDirectory(tar, "./", "/", 0x1ED, 0);
            image.AddDirectory(tar, "wide/", "/wide", 0x1ED, 1);
            for (int i = 0; i < wideDirectoryFiles; i++)
            {
                image.AddFile(tar, $"wide/file-{i:d6}", i);
            }
            image.AddDirectory(tar, "tree/", "/tree", 0x1ED, 2);
            const int TreeDirectories = 100;
            for (int d = 0; d < TreeDirectories; d++)
            {
                image.AddDirectory(tar, $"tree/d{d:d3}/", $"/tree/d{d:d3}", d % 2 == 0 ? 0x1ED : 0x1C0, d);
                for (int i = d; i < treeFiles; i += TreeDirectories)
                {
                    image.AddFile(tar, $"tree/d{d:d3}/f{i:d6}", wideDirectoryFiles + i);
                }
            }
            image.AddDirectory(tar, "links/", "/links", 0x1ED, 3);
            for (int i = 0; i < 1000 && i < wideDirectoryFiles; i++)
            {
                image.AddSymlink(tar, $"links/s{i:d4}", $"../wide/file-{i:d6}", i);
            }
            for (int i = 0; i < 100 && i < wideDirectoryFiles; i++)
            {
                image.AddHardLink(tar, $"links/h{i:d4}", $"wide/file-{i:d6}");
            }
            if (bigFileSize > 0)
            {
                image.AddDirectory(tar, "big/", "/big", 0x1ED, 4);
                image.AddBigFile(tar, "big/over-4g", bigFileSize);
            }
        }
        return image;
    }

    private void AddDirectory(TarWriter tar, string name, string path, int mode, long timeOffset)
    {
        var entry = new PaxTarEntry(TarEntryType.Directory, name)
        {
            Mode = (UnixFileMode)mode,
            ModificationTime = DateTimeOffset.FromUnixTimeSeconds(BaseTime + timeOffset),
        };
        tar.WriteEntry(entry);
        _entries.Add(Entry(path, FsKind.Directory, mode, 0, 0, 0, BaseTime + timeOffset) with { LinkCount = 0 });
    }

    private void AddFile(TarWriter tar, string name, int i)
    {
        // A spread of sizes (0 to ~200 bytes, one in 500 spans several blocks), modes and owners.
        byte[] content = i % 10 == 0 ? [] : Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat($"file {i}\n", i % 500 == 1 ? 2000 : (i % 17) + 1)));
        int mode = (i % 4) switch { 0 => 0x1A4, 1 => 0x180, 2 => 0x1ED, _ => 0x124 };
        uint owner = (i % 3) switch { 0 => 0u, 1 => 1000u, _ => 65534u };
        long mtime = BaseTime + (i % 100_000);
        Dictionary<string, string>? xattrs = i % 97 == 0 ? new() { ["SCHILY.xattr.user.generated"] = $"attr {i}" } : null;
        var entry = xattrs is null ? new PaxTarEntry(TarEntryType.RegularFile, name) : new PaxTarEntry(TarEntryType.RegularFile, name, xattrs);
        entry.Mode = (UnixFileMode)mode;
        entry.Uid = (int)owner;
        entry.Gid = (int)owner;
        entry.ModificationTime = DateTimeOffset.FromUnixTimeSeconds(mtime);
        entry.DataStream = new MemoryStream(content);
        tar.WriteEntry(entry);
        var expected = Entry("/" + name, FsKind.RegularFile, mode, owner, owner, content.Length, mtime) with
        {
            Digest = ContentDigest.Of(content),
        };
        if (xattrs is not null)
        {
            expected = expected with
            {
                Xattrs = new SortedDictionary<string, string>(StringComparer.Ordinal)
                {
                    ["user.generated"] = Convert.ToHexStringLower(Encoding.UTF8.GetBytes($"attr {i}")),
                },
            };
        }
        _entries.Add(expected);
        FileCount++;
    }

    private void AddSymlink(TarWriter tar, string name, string target, int i)
    {
        var entry = new PaxTarEntry(TarEntryType.SymbolicLink, name)
        {
            LinkName = target,
            Mode = (UnixFileMode)0x1FF,
            ModificationTime = DateTimeOffset.FromUnixTimeSeconds(BaseTime + i),
        };
        tar.WriteEntry(entry);
        _entries.Add(Entry("/" + name, FsKind.Symlink, 0x1FF, 0, 0, Encoding.UTF8.GetByteCount(target), BaseTime + i) with { LinkTarget = target });
        FileCount++;
    }

    private void AddHardLink(TarWriter tar, string name, string target)
    {
        tar.WriteEntry(new PaxTarEntry(TarEntryType.HardLink, name) { LinkName = target });
        int index = _entries.FindIndex(e => e.Path == "/" + target);
        TreeEntry original = _entries[index];
        ulong links = original.LinkCount + 1;
        // Every name of the inode carries the same metadata and the new link count.
        for (int i = 0; i < _entries.Count; i++)
        {
            if (_entries[i].Inode == original.Inode)
            {
                _entries[i] = _entries[i] with { LinkCount = links };
            }
        }
        _entries.Add(original with { Path = "/" + name, LinkCount = links });
        FileCount++;
    }

    private void AddBigFile(TarWriter tar, string name, long size)
    {
        using var pattern = new PatternStream(size);
        using var hashing = new DigestingReadStream(pattern);
        var entry = new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            Mode = (UnixFileMode)0x1A4,
            ModificationTime = DateTimeOffset.FromUnixTimeSeconds(BaseTime),
            DataStream = hashing,
        };
        tar.WriteEntry(entry);
        _entries.Add(Entry("/" + name, FsKind.RegularFile, 0x1A4, 0, 0, size, BaseTime) with { Digest = hashing.Digest() });
        FileCount++;
    }

    private TreeEntry Entry(string path, FsKind type, int mode, uint uid, uint gid, long size, long mtime) => new()
    {
        Path = path,
        Type = type,
        Permissions = (uint)mode,
        Uid = uid,
        Gid = gid,
        Size = size,
        MtimeSeconds = mtime,
        Inode = _nextInode++,
        LinkCount = 1,
    };

    /// <summary>
    /// A file's content that is zero except for 1 MiB at the start, 128 KiB straddling the
    /// 4 GiB mark (where 32-bit sizes and block numbers wrap) and 1 MiB at the end.
    /// Seekable with a known length, as TarWriter wants.
    /// </summary>
    private sealed class PatternStream : Stream
    {
        private const long FourGiB = 1L << 32;
        private readonly (long Start, long End)[] _data;

        public PatternStream(long length)
        {
            Length = length;
            _data = [(0, 1 << 20), (FourGiB - (64 << 10), FourGiB + (64 << 10)), (length - (1 << 20), length)];
        }

        public override long Length { get; }

        public override long Position { get; set; }

        public override bool CanRead => true;

        public override bool CanSeek => true;

        public override bool CanWrite => false;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n = (int)Math.Min(buffer.Length, Length - Position);
            Span<byte> target = buffer[..n];
            target.Clear();
            foreach ((long start, long end) in _data)
            {
                long from = Math.Max(start, Position);
                long to = Math.Min(end, Position + n);
                for (long o = from; o < to; o++)
                {
                    // Non-zero and position-dependent: a block written at the wrong place shows.
                    target[(int)(o - Position)] = (byte)((o * 2654435761L >> 13) | 1);
                }
            }
            Position += n;
            return n;
        }

        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => Position + offset,
            _ => Length + offset,
        };

        public override void Flush()
        {
        }

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Passes reads through and digests what went by, so the expected digest costs no second pass.</summary>
    private sealed class DigestingReadStream(Stream inner) : Stream
    {
        private readonly ContentDigest _digest = new();

        public override long Length => inner.Length;

        public override long Position
        {
            get => inner.Position;
            set => throw new NotSupportedException("a hashing stream reads forward only");
        }

        public override bool CanRead => true;

        public override bool CanSeek => inner.CanSeek;

        public override bool CanWrite => false;

        public string Digest() => _digest.Finish();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            _digest.Append(buffer[..n]);
            return n;
        }

        public override long Seek(long offset, SeekOrigin origin)
            => offset == 0 && origin == SeekOrigin.Current ? inner.Position : throw new NotSupportedException("a hashing stream reads forward only");

        public override void Flush()
        {
        }

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _digest.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}

/// <summary>A write-only file stream that seeks over all-zero 4 KiB blocks instead of writing them.</summary>
internal sealed class SparseWriteStream : Stream
{
    private const int Block = 4096;
    private readonly FileStream _file;
    private long _position;

    public SparseWriteStream(string path)
    {
        _file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
    }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => _position;

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            int n = (int)Math.Min(buffer.Length, Block - (_position % Block));
            ReadOnlySpan<byte> chunk = buffer[..n];
            if (chunk.ContainsAnyExcept((byte)0))
            {
                _file.Position = _position;
                _file.Write(chunk);
            }
            _position += n;
            buffer = buffer[n..];
        }
    }

    public override void Flush() => _file.Flush();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _file.SetLength(_position);
            _file.Dispose();
        }
        base.Dispose(disposing);
    }
}
