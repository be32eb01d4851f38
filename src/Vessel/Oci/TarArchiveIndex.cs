using System.Text;
using Microsoft.Win32.SafeHandles;
using Vessel.Common;
using Vessel.Tar;

namespace Vessel.Oci;

/// <summary>One member of a tar archive: where its data lies in the file.</summary>
internal sealed record TarMember(string Name, TarMemberType Type, long DataOffset, long Size, string? LinkTarget);

internal enum TarMemberType
{
    File,
    Directory,
    Symlink,
    HardLink,
    Other,
}

/// <summary>
/// The members of an uncompressed tar file (an oci-archive or docker-archive) indexed by
/// name, so that blobs are served as windows on the file instead of being extracted. Reads
/// POSIX ustar headers (pax "Interchange Format"), pax extended headers (path, linkpath,
/// size) and GNU long names; data is read with positional reads on one handle, so several
/// member streams can be open at once. Member names are normalized (a leading "./" dropped)
/// and checked: an absolute name or one with a ".." component rejects the whole archive.
/// </summary>
internal sealed class TarArchiveIndex : IDisposable
{
    private const int BlockSize = 512;
    public const int MaxMembers = 100_000; // an image archive holds a few files per layer
    private const int MaxForeignMembers = 16; // names no image archive uses: a root filesystem tarball, no need to read on
    private const int MaxExtendedHeader = 1 << 20; // pax records or a GNU long name: real ones are tiny
    private const int MaxLinkHops = 8;

    private static readonly System.Buffers.SearchValues<char> s_lowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, TarMember> _members;

    private TarArchiveIndex(string path, SafeFileHandle handle, Dictionary<string, TarMember> members)
    {
        Path = path;
        _handle = handle;
        _members = members;
    }

    public string Path { get; }

    /// <summary>Tolerant indexing skipped a member whose name is absolute or has "..".</summary>
    public string? UnsafeName { get; private set; }

    public bool HasUnsafeNames => UnsafeName is not null;

    /// <summary>Tolerant indexing stopped at <see cref="MaxMembers"/>.</summary>
    public bool IsPartial { get; private set; }

    public IReadOnlyCollection<TarMember> Members => _members.Values;

    /// <summary>Indexes <paramref name="path"/>; <paramref name="what"/> names the archive in errors.</summary>
    public static TarArchiveIndex Open(string path, string what, CancellationToken cancellationToken) =>
        Open(path, what, tolerant: false, cancellationToken);

    /// <summary>
    /// Indexes <paramref name="path"/>. <paramref name="tolerant"/> is for sniffing a file that
    /// may be a root filesystem tarball instead: an unsafe member name is skipped and noted in
    /// <see cref="HasUnsafeNames"/>, and past <see cref="MaxMembers"/> members, or at the
    /// <see cref="MaxForeignMembers"/>th name no image archive uses, indexing stops
    /// (<see cref="IsPartial"/>), since such a file is no image archive.
    /// </summary>
    public static TarArchiveIndex Open(string path, string what, bool tolerant, CancellationToken cancellationToken)
    {
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            var index = new TarArchiveIndex(path, handle, new Dictionary<string, TarMember>(StringComparer.Ordinal));
            index.ReadMembers(what, tolerant, cancellationToken);
            return index;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _members.ContainsKey(name);

    /// <summary>Finds a regular file, following symlinks and hard links inside the archive.</summary>
    public TarMember? Find(string name, string what)
    {
        string current = name;
        for (int hop = 0; hop <= MaxLinkHops; hop++)
        {
            if (!_members.TryGetValue(current, out TarMember? member))
            {
                return null;
            }
            switch (member.Type)
            {
                case TarMemberType.File:
                    return member;
                case TarMemberType.HardLink:
                    current = Normalize(member.LinkTarget ?? string.Empty, what);
                    break;
                case TarMemberType.Symlink:
                    string target = member.LinkTarget ?? string.Empty;
                    if (target.StartsWith('/'))
                    {
                        throw new InvalidDataException($"{what}: member '{OciDigest.Printable(current)}' is a symlink to the absolute path '{OciDigest.Printable(target)}', outside the archive.");
                    }
                    int slash = current.LastIndexOf('/');
                    current = ResolveLink(slash < 0 ? target : current[..(slash + 1)] + target, current, what);
                    break;
                default:
                    throw new InvalidDataException($"{what}: member '{OciDigest.Printable(current)}' is not a regular file.");
            }
        }
        throw new InvalidDataException($"{what}: member '{OciDigest.Printable(name)}' is a chain of more than {MaxLinkHops} links.");
    }

    /// <summary>
    /// Resolves a symlink target joined to its directory: ".." steps up (docker save links
    /// duplicate layers as "../ID/layer.tar"), but never above the archive root.
    /// </summary>
    private static string ResolveLink(string path, string link, string what)
    {
        var parts = new List<string>();
        foreach (string part in path.Split('/'))
        {
            if (part.Length == 0 || part == ".")
            {
                continue;
            }
            if (part == "..")
            {
                if (parts.Count == 0)
                {
                    throw new InvalidDataException($"{what}: the symlink '{OciDigest.Printable(link)}' points outside the archive.");
                }
                parts.RemoveAt(parts.Count - 1);
                continue;
            }
            parts.Add(part);
        }
        return string.Join('/', parts);
    }

    /// <summary>A read-only stream over a member's data.</summary>
    public Stream OpenMember(TarMember member) => new TarMemberStream(_handle, member.DataOffset, member.Size);

    public void Dispose() => _handle.Dispose();

    /// <summary>Normalizes a member name or link target; rejects absolute names and any ".." component.</summary>
    public static string Normalize(string name, string what)
    {
        if (name.StartsWith('/'))
        {
            throw new InvalidDataException($"{what}: member name '{OciDigest.Printable(name)}' is absolute; an image archive only holds relative names.");
        }
        var parts = new List<string>();
        foreach (string part in name.Split('/'))
        {
            if (part.Length == 0 || part == ".")
            {
                continue;
            }
            if (part == "..")
            {
                throw new InvalidDataException($"{what}: member name '{OciDigest.Printable(name)}' escapes the archive root ('..').");
            }
            if (part.Contains('\0', StringComparison.Ordinal))
            {
                throw new InvalidDataException($"{what}: member name '{OciDigest.Printable(name)}' contains a NUL byte.");
            }
            parts.Add(part);
        }
        return string.Join('/', parts);
    }

    private void ReadMembers(string what, bool tolerant, CancellationToken cancellationToken)
    {
        SafeFileHandle handle = _handle;
        long fileLength = RandomAccess.GetLength(handle);
        Dictionary<string, TarMember> members = _members;
        byte[] block = new byte[BlockSize];
        long offset = 0;
        string? longName = null;
        string? longLink = null;
        Dictionary<string, string>? pax = null;
        int foreign = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (offset + BlockSize > fileLength)
            {
                if (offset == fileLength && members.Count > 0)
                {
                    break; // no end-of-archive blocks: tolerated, as GNU tar does
                }
                throw new InvalidDataException($"{what} is truncated or not a tar archive: it ends inside the header at offset {offset}.");
            }
            ReadExactly(handle, block, offset);
            if (block.AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                break; // end-of-archive marker
            }
            VerifyChecksum(block, offset, what);
            long size = ParseNumber(block.AsSpan(124, 12), offset, what);
            byte typeflag = block[156];
            long dataOffset = offset + BlockSize;
            if (size < 0 || dataOffset + size > fileLength)
            {
                throw new InvalidDataException($"{what} is truncated: the member at offset {offset} claims {size} bytes, past the end of the file ({fileLength} bytes).");
            }
            long next = dataOffset + ((size + BlockSize - 1) / BlockSize * BlockSize);
            switch (typeflag)
            {
                case (byte)'x':
                    pax = ParsePax(ReadBytes(handle, dataOffset, size, what), offset, what);
                    offset = next;
                    continue;
                case (byte)'g':
                    offset = next; // global pax headers carry nothing an image archive needs
                    continue;
                case (byte)'L':
                    longName = Encoding.UTF8.GetString(ReadBytes(handle, dataOffset, size, what)).TrimEnd('\0');
                    offset = next;
                    continue;
                case (byte)'K':
                    longLink = Encoding.UTF8.GetString(ReadBytes(handle, dataOffset, size, what)).TrimEnd('\0');
                    offset = next;
                    continue;
            }

            string name = longName ?? HeaderName(block);
            string? link = longLink ?? CString(block.AsSpan(157, 100));
            if (pax is not null)
            {
                name = pax.GetValueOrDefault("path", name);
                link = pax.GetValueOrDefault("linkpath", link);
                if (pax.TryGetValue("size", out string? paxSize))
                {
                    if (!long.TryParse(paxSize, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out size)
                        || dataOffset + size > fileLength)
                    {
                        throw new InvalidDataException($"{what}: the pax size '{OciDigest.Printable(paxSize)}' of the member at offset {offset} is invalid or past the end of the file.");
                    }
                    next = dataOffset + ((size + BlockSize - 1) / BlockSize * BlockSize);
                }
            }
            longName = null;
            longLink = null;
            pax = null;

            TarMemberType type = typeflag switch
            {
                (byte)'0' or 0 or (byte)'7' => TarMemberType.File,
                (byte)'1' => TarMemberType.HardLink,
                (byte)'2' => TarMemberType.Symlink,
                (byte)'5' => TarMemberType.Directory,
                _ => TarMemberType.Other,
            };
            string normalized;
            try
            {
                normalized = Normalize(name, what);
                if (type == TarMemberType.HardLink && link is not null)
                {
                    Normalize(link, what);
                }
            }
            catch (InvalidDataException) when (tolerant)
            {
                UnsafeName ??= name;
                offset = next;
                continue;
            }
            if (normalized.Length > 0)
            {
                if (tolerant && !IsImageArchiveName(normalized) && ++foreign >= MaxForeignMembers)
                {
                    IsPartial = true;
                    return;
                }
                if (members.Count >= MaxMembers)
                {
                    if (tolerant)
                    {
                        IsPartial = true;
                        return;
                    }
                    throw new InvalidDataException($"{what} has more than {MaxMembers} members; that is not an image archive.");
                }
                members[normalized] = new TarMember(normalized, type, dataOffset, type == TarMemberType.File ? size : 0, link);
            }
            offset = next;
        }
    }

    /// <summary>
    /// Whether an image archive could hold <paramref name="name"/>: OCI layout files and
    /// blobs, docker save's manifest, repositories, and its per-layer directories and
    /// config files named by a hex digest (podman: HEX.tar layers).
    /// </summary>
    private static bool IsImageArchiveName(string name)
    {
        int slash = name.IndexOf('/', StringComparison.Ordinal);
        ReadOnlySpan<char> first = slash < 0 ? name : name.AsSpan(0, slash);
        if (first is "manifest.json" or "repositories" or "index.json" or "oci-layout" or "blobs")
        {
            return true;
        }
        int dot = first.IndexOf('.');
        ReadOnlySpan<char> stem = dot < 0 ? first : first[..dot];
        return stem.Length >= 32 && !stem.ContainsAnyExcept(s_lowerHex);
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        if (PositionalRead.Fill(handle, buffer, offset) < buffer.Length)
        {
            throw new EndOfStreamException();
        }
    }

    private static byte[] ReadBytes(SafeFileHandle handle, long offset, long size, string what)
    {
        if (size > MaxExtendedHeader)
        {
            throw new InvalidDataException($"{what}: an extended header at offset {offset} claims {size} bytes; refusing more than {MaxExtendedHeader}.");
        }
        byte[] data = new byte[size];
        ReadExactly(handle, data, offset);
        return data;
    }

    private static void VerifyChecksum(ReadOnlySpan<byte> block, long offset, string what)
    {
        if (!TarHeader.ChecksumMatches(block))
        {
            throw new InvalidDataException($"{what} is corrupt or not a tar archive: the header at offset {offset} fails its checksum.");
        }
    }

    /// <summary>A numeric header field, as <see cref="TarReader"/> reads it.</summary>
    private static long ParseNumber(ReadOnlySpan<byte> field, long offset, string what) =>
        TarHeader.ParseNumber(field, out long value) is { } problem
            ? throw new InvalidDataException($"{what}: a number in the header at offset {offset}: {problem}.")
            : value;

    private static string HeaderName(ReadOnlySpan<byte> block)
    {
        string name = CString(block[..100]);
        // The prefix field exists only in POSIX ustar ("ustar\0"); GNU's "ustar  " uses those bytes for times.
        if (block.Slice(257, 6).SequenceEqual("ustar\0"u8))
        {
            string prefix = CString(block.Slice(345, 155));
            if (prefix.Length > 0)
            {
                name = prefix + "/" + name;
            }
        }
        return name;
    }

    private static string CString(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    /// <summary>Pax records, by the rules <see cref="TarReader"/> follows.</summary>
    private static Dictionary<string, string> ParsePax(byte[] bytes, long offset, string what)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        int pos = 0;
        string? error;
        while (TarHeader.TryReadPaxRecord(bytes, ref pos, out PaxRecordRange r, out error))
        {
            map[Encoding.UTF8.GetString(bytes, r.KeyStart, r.KeyLength)] = Encoding.UTF8.GetString(bytes, r.ValueStart, r.ValueLength);
        }
        return error is null ? map : throw new InvalidDataException($"{what}: a malformed pax header at offset {offset} ({error}).");
    }

    /// <summary>A window on the archive file, read with positional reads.</summary>
    private sealed class TarMemberStream(SafeFileHandle handle, long start, long length) : ReadOnlyStream
    {
        private readonly SafeFileHandle _handle = handle;
        private readonly long _start = start;
        private readonly long _length = length;
        private long _position;

        public override bool CanSeek => CanRead;

        public override long Length => _length;

        public override long Position
        {
            get => _position;
            set => _position = Math.Clamp(value, 0, _length);
        }

        protected override int ReadCore(Span<byte> buffer)
        {
            int want = (int)Math.Min(buffer.Length, _length - _position);
            if (want <= 0)
            {
                return 0;
            }
            int n = RandomAccess.Read(_handle, buffer[..want], _start + _position);
            _position += n;
            return n;
        }

        protected override async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        {
            int want = (int)Math.Min(buffer.Length, _length - _position);
            if (want <= 0)
            {
                return 0;
            }
            int n = await RandomAccess.ReadAsync(_handle, buffer[..want], _start + _position, cancellationToken);
            _position += n;
            return n;
        }

        public override long Seek(long offset, SeekOrigin origin)
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            Position = origin switch
            {
                SeekOrigin.Begin => offset,
                SeekOrigin.Current => _position + offset,
                _ => _length + offset,
            };
            return _position;
        }
    }
}
