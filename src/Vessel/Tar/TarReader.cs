using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Vessel.Common;

namespace Vessel.Tar;

/// <summary>
/// A streaming tar reader for ustar, pax (POSIX.1-2001) and GNU archives, written for
/// hostile input: every header is checksummed, every length is bounded, names and xattr
/// values are kept as raw bytes. It never seeks, so it reads straight from a decompressor.
/// </summary>
/// <remarks>Formats: POSIX.1-2017 "pax" (ustar header, extended header records) and GNU tar's
/// manual, "Basic Tar Format" and "Sparse Formats" (old GNU 'S', pax 0.1 and 1.0).</remarks>
public sealed class TarReader : IDisposable
{
    public const int BlockSize = 512;

    /// <summary>ext4's largest file with 4 KiB blocks is 16 TiB; anything larger is not a real file.</summary>
    public const long MaxEntrySize = 16L << 40;

    private const int MaxPaxSize = 1 << 20; // pax headers hold names and xattrs; 1 MiB is generous
    private const int MaxNameLength = 4096; // PATH_MAX
    private const int MaxSparseEntries = 1 << 20;

    private readonly Stream _stream;
    private readonly string _context;
    private readonly byte[] _buffer;
    private readonly IBufferLendingStream? _lender;
    private readonly byte[] _header = new byte[BlockSize]; // one per reader, not per entry
    private byte[] _window; // _buffer, or the stream's own buffer when it lends it (no copy)
    private int _bufferPos; // indexes into _window
    private int _bufferLen;
    private long _position; // bytes consumed from the stream by the reader's caller view
    private long _dataRemaining;
    private long _paddingRemaining;
    private bool _endReached;
    private readonly Dictionary<string, byte[]> _globalPax = new(StringComparer.Ordinal);

    // The current entry's pax records, parsed in place: values are ranges of _pax, so most
    // entries need no dictionary, value arrays or strings for them (one per reader, reused).
    private const int MaxPaxTotal = 4 * MaxPaxSize; // all the pax headers in front of one entry
    private readonly List<PaxRecord> _paxRecords = [];
    private byte[] _pax = [];
    private int _paxLength;

    private readonly record struct PaxRecord(string Key, int ValueStart, int ValueLength);

    public TarReader(Stream stream, string context, int bufferSize = 1 << 20)
    {
        _stream = stream;
        _context = context;
        _lender = stream as IBufferLendingStream;
        _buffer = ArrayPool<byte>.Shared.Rent(_lender is null ? Math.Max(bufferSize, 64 * 1024) : 0);
        _window = _buffer;
    }

    /// <summary>Bytes of the uncompressed archive consumed so far.</summary>
    public long Position => _position;

    /// <summary>Reads the next entry, skipping whatever is left of the current one. Null at the end of the archive.</summary>
    public async ValueTask<TarEntry?> NextAsync(CancellationToken cancellationToken)
    {
        if (_endReached)
        {
            return null;
        }
        await SkipRemainingAsync(cancellationToken);

        _paxRecords.Clear();
        _paxLength = 0;
        byte[]? longName = null;
        byte[]? longLink = null;
        byte[] header = _header;
        while (true)
        {
            long headerOffset = _position;
            int got = await ReadFullAsync(header, entryData: false, cancellationToken);
            if (got == 0)
            {
                // A stream that ends without the two zero blocks: accept only at a header boundary.
                if (_paxRecords.Count > 0 || longName is not null || longLink is not null)
                {
                    throw Error(headerOffset, "archive ends after an extended header, before its entry");
                }
                _endReached = true;
                return null;
            }
            if (got < BlockSize)
            {
                throw Error(headerOffset, "archive is truncated inside a header");
            }
            if (header.AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                _endReached = true;
                return null;
            }
            VerifyChecksum(header, headerOffset);

            var type = (TarEntryType)header[156];
            long size = ParseNumber(header.AsSpan(124, 12), "size", headerOffset);
            if (size < 0 || size > MaxEntrySize)
            {
                throw Error(headerOffset, $"entry claims a size of {size} bytes (the limit is {MaxEntrySize})");
            }

            switch (type)
            {
                case TarEntryType.PaxExtended:
                case TarEntryType.PaxGlobal:
                    {
                        if (size > MaxPaxSize)
                        {
                            throw Error(headerOffset, $"pax header of {size} bytes exceeds the {MaxPaxSize}-byte limit");
                        }
                        if (_paxLength + size > MaxPaxTotal)
                        {
                            throw Error(headerOffset, $"pax headers before one entry exceed {MaxPaxTotal} bytes");
                        }
                        int start = _paxLength;
                        await ReadPaxDataAsync((int)size, headerOffset, cancellationToken);
                        if (type == TarEntryType.PaxGlobal)
                        {
                            // Rare: kept as copies, for every entry that follows.
                            int local = _paxRecords.Count;
                            ParsePax(start, (int)size, headerOffset);
                            foreach (PaxRecord r in _paxRecords[local..])
                            {
                                _globalPax[r.Key] = _pax.AsSpan(r.ValueStart, r.ValueLength).ToArray();
                            }
                            _paxRecords.RemoveRange(local, _paxRecords.Count - local);
                            _paxLength = start;
                        }
                        else
                        {
                            ParsePax(start, (int)size, headerOffset);
                        }
                        continue;
                    }
                case TarEntryType.GnuLongName:
                case TarEntryType.GnuLongLink:
                    {
                        if (size > MaxNameLength + 1)
                        {
                            throw Error(headerOffset, $"GNU long name of {size} bytes exceeds the {MaxNameLength}-byte limit");
                        }
                        byte[] data = await ReadBlobAsync((int)size, headerOffset, cancellationToken);
                        byte[] name = TrimNul(data);
                        if (type == TarEntryType.GnuLongName)
                        {
                            longName = name;
                        }
                        else
                        {
                            longLink = name;
                        }
                        continue;
                    }
            }

            return await BuildEntryAsync(header, type, size, headerOffset, longName, longLink, cancellationToken);
        }
    }

    /// <summary>Reads data of the current entry; 0 when it is exhausted.</summary>
    public async ValueTask<int> ReadDataAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (_dataRemaining == 0 || destination.Length == 0)
        {
            return 0;
        }
        int want = (int)Math.Min(destination.Length, _dataRemaining);
        int n = await ReadSomeAsync(destination[..want], cancellationToken);
        if (n == 0)
        {
            throw Error(_position, $"archive is truncated: {_dataRemaining} bytes of entry data are missing");
        }
        _dataRemaining -= n;
        return n;
    }

    /// <summary>
    /// The next piece of the current entry's data without a copy: a window on the reader's
    /// buffer, valid until the next call on the reader. Empty when the entry is exhausted.
    /// </summary>
    public async ValueTask<ReadOnlyMemory<byte>> ReadDataChunkAsync(CancellationToken cancellationToken)
    {
        if (_dataRemaining == 0)
        {
            return ReadOnlyMemory<byte>.Empty;
        }
        if (_bufferPos == _bufferLen && !await FillAsync(cancellationToken))
        {
            throw Error(_position, $"archive is truncated: {_dataRemaining} bytes of entry data are missing");
        }
        int n = (int)Math.Min(_dataRemaining, _bufferLen - _bufferPos);
        ReadOnlyMemory<byte> chunk = _window.AsMemory(_bufferPos, n);
        _bufferPos += n;
        _position += n;
        _dataRemaining -= n;
        return chunk;
    }

    /// <summary>Reads data of the current entry until <paramref name="destination"/> is full or the entry ends.</summary>
    public ValueTask<int> ReadDataFullAsync(Memory<byte> destination, CancellationToken cancellationToken)
        => ReadFullAsync(destination, entryData: true, cancellationToken);

    /// <summary>
    /// Reads the underlying stream to its end, so that a digest-verifying stream sees every
    /// byte. Fails if anything but zero padding follows the archive's end.
    /// </summary>
    public async ValueTask DrainAsync(CancellationToken cancellationToken)
    {
        await SkipRemainingAsync(cancellationToken);
        byte[] scratch = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            int n;
            while ((n = await ReadSomeAsync(scratch, cancellationToken)) > 0)
            {
                if (scratch.AsSpan(0, n).IndexOfAnyExcept((byte)0) >= 0)
                {
                    throw Error(_position - n, "data follows the end-of-archive marker");
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
    }

    /// <summary>An entry from its header, the extension headers before it and, for sparse files, its map: read, overridden, checked, assembled.</summary>
    private async ValueTask<TarEntry> BuildEntryAsync(
        byte[] header, TarEntryType type, long size, long headerOffset,
        byte[]? longName, byte[]? longLink, CancellationToken cancellationToken)
    {
        PaxFields f = ReadHeaderFields(header, type, size, headerOffset, longName, longLink);
        ApplyPaxRecords(ref f, headerOffset);
        CheckLimits(in f, headerOffset);

        // Entries whose type carries no data may still claim a size (hard links in some
        // writers); that data is skipped, never interpreted.
        _dataRemaining = f.Size;
        _paddingRemaining = (BlockSize - (f.Size % BlockSize)) % BlockSize;
        (IReadOnlyList<(long, long)>? sparse, long realSize) = await ReadSparseMapAsync(header, type, headerOffset, f, cancellationToken);

        if (type is TarEntryType.RegularFile or TarEntryType.OldRegularFile && f.Name[^1] == (byte)'/')
        {
            type = TarEntryType.Directory; // old V7 archives mark directories with a trailing slash only
        }
        return new TarEntry
        {
            NameBytes = f.Name,
            Type = type,
            LinkNameBytes = f.Link,
            Mode = f.Mode,
            Uid = f.Uid,
            Gid = f.Gid,
            DataLength = _dataRemaining,
            Size = sparse is null ? _dataRemaining : realSize,
            SparseMap = sparse,
            ModificationTime = f.ModificationTime,
            AccessTime = f.AccessTime,
            ChangeTime = f.ChangeTime,
            DeviceMajor = f.DeviceMajor,
            DeviceMinor = f.DeviceMinor,
            Xattrs = (IReadOnlyList<KeyValuePair<string, byte[]>>?)f.Xattrs ?? [],
            HeaderOffset = headerOffset,
        };
    }

    /// <summary>The ustar (and GNU) header fields; a GNU long name or link replaces the header's, and a pax path leaves it uncopied.</summary>
    private PaxFields ReadHeaderFields(byte[] header, TarEntryType type, long size, long headerOffset, byte[]? longName, byte[]? longLink)
    {
        bool isUstar = header.AsSpan(257, 6).SequenceEqual("ustar\0"u8);
        bool isGnu = header.AsSpan(257, 8).SequenceEqual("ustar  \0"u8);

        // The header's own name is not copied out when a pax record replaces it.
        bool paxPath = longName is null && HasPaxRecord("path");
        byte[] name = longName ?? (paxPath ? [] : TrimNul(header.AsSpan(0, 100)));
        if (longName is null && !paxPath && isUstar && header[345] != 0)
        {
            name = [.. TrimNulSpan(header.AsSpan(345, 155)), (byte)'/', .. name];
        }
        var f = new PaxFields
        {
            Name = name,
            Link = longLink ?? (HasPaxRecord("linkpath") ? [] : TrimNul(header.AsSpan(157, 100))),
            Mode = (int)(ParseNumber(header.AsSpan(100, 8), "mode", headerOffset) & 0xFFFF),
            Size = size,
            RealSize = size,
            Uid = ParseNumber(header.AsSpan(108, 8), "uid", headerOffset),
            Gid = ParseNumber(header.AsSpan(116, 8), "gid", headerOffset),
            ModificationTime = new TarTime(ParseNumber(header.AsSpan(136, 12), "mtime", headerOffset), 0),
        };
        if (isGnu)
        {
            long a = ParseNumber(header.AsSpan(345, 12), "atime", headerOffset);
            long c = ParseNumber(header.AsSpan(357, 12), "ctime", headerOffset);
            f.AccessTime = a != 0 ? new TarTime(a, 0) : null;
            f.ChangeTime = c != 0 ? new TarTime(c, 0) : null;
        }
        if (type is TarEntryType.CharacterDevice or TarEntryType.BlockDevice)
        {
            f.DeviceMajor = checked((int)ParseNumber(header.AsSpan(329, 8), "devmajor", headerOffset));
            f.DeviceMinor = checked((int)ParseNumber(header.AsSpan(337, 8), "devminor", headerOffset));
        }
        return f;
    }

    /// <summary>Global records first, then this entry's, in order: the last one of a key wins.</summary>
    private void ApplyPaxRecords(ref PaxFields f, long headerOffset)
    {
        foreach (KeyValuePair<string, byte[]> record in _globalPax)
        {
            ApplyPax(ref f, record.Key, record.Value, headerOffset);
        }
        foreach (PaxRecord record in _paxRecords)
        {
            ApplyPax(ref f, record.Key, _pax.AsSpan(record.ValueStart, record.ValueLength), headerOffset);
        }
    }

    private void CheckLimits(in PaxFields f, long headerOffset)
    {
        if (f.Size < 0 || f.Size > MaxEntrySize || f.RealSize < 0 || f.RealSize > MaxEntrySize)
        {
            throw Error(headerOffset, $"entry claims a size of {Math.Max(f.Size, f.RealSize)} bytes (the limit is {MaxEntrySize})");
        }
        if (f.Name.Length == 0)
        {
            throw Error(headerOffset, "entry has an empty name");
        }
        if (f.Name.Length > MaxNameLength || f.Link.Length > MaxNameLength)
        {
            throw Error(headerOffset, $"entry name or link target is longer than {MaxNameLength} bytes");
        }
    }

    /// <summary>
    /// The data regions of a sparse entry (old GNU 'S', pax 1.0 in the data, pax 0.1 in a record),
    /// checked against the file's size and the stored bytes, with that size; null for an ordinary
    /// entry. The old GNU format carries the real size in its header.
    /// </summary>
    private async ValueTask<(IReadOnlyList<(long, long)>? Map, long RealSize)> ReadSparseMapAsync(
        byte[] header, TarEntryType type, long headerOffset, PaxFields f, CancellationToken cancellationToken)
    {
        IReadOnlyList<(long, long)>? sparse;
        long realSize = f.RealSize;
        if (type == TarEntryType.GnuSparse)
        {
            sparse = await ReadOldGnuSparseMapAsync(header, headerOffset, cancellationToken);
            realSize = ParseNumber(header.AsSpan(483, 12), "realsize", headerOffset);
        }
        else if (f.SparseMajor == "1")
        {
            sparse = await ReadPaxSparseMapAsync(headerOffset, cancellationToken);
        }
        else if (f.SparseMap is not null)
        {
            sparse = ParseSparseList(f.SparseMap.Split(','), headerOffset);
        }
        else
        {
            return (null, realSize);
        }
        long stored = 0;
        foreach (var (off, len) in sparse)
        {
            if (off < 0 || len < 0 || off + len > realSize)
            {
                throw Error(headerOffset, $"sparse map region ({off}, {len}) lies outside the file's {realSize} bytes");
            }
            stored += len;
        }
        if (stored != _dataRemaining)
        {
            throw Error(headerOffset, $"sparse map describes {stored} bytes but the entry stores {_dataRemaining}");
        }
        return (sparse, realSize);
    }

    private async ValueTask<IReadOnlyList<(long, long)>> ReadOldGnuSparseMapAsync(byte[] header, long headerOffset, CancellationToken cancellationToken)
    {
        var map = new List<(long, long)>();
        AddGnuSparse(header.AsSpan(386, 4 * 24), map, headerOffset);
        bool extended = header[482] != 0;
        byte[] ext = new byte[BlockSize];
        while (extended)
        {
            // Extension blocks sit between the header and the data; they are not part of the size.
            long savedData = _dataRemaining;
            long savedPad = _paddingRemaining;
            _dataRemaining = 0;
            _paddingRemaining = 0;
            if (await ReadFullAsync(ext, entryData: false, cancellationToken) < BlockSize)
            {
                throw Error(headerOffset, "archive is truncated inside a GNU sparse extension header");
            }
            _dataRemaining = savedData;
            _paddingRemaining = savedPad;
            AddGnuSparse(ext.AsSpan(0, 21 * 24), map, headerOffset);
            extended = ext[504] != 0;
            if (map.Count > MaxSparseEntries)
            {
                throw Error(headerOffset, "sparse map has too many entries");
            }
        }
        return map;
    }

    private void AddGnuSparse(ReadOnlySpan<byte> entries, List<(long, long)> map, long headerOffset)
    {
        for (int i = 0; i + 24 <= entries.Length; i += 24)
        {
            if (entries[i] == 0)
            {
                break;
            }
            long off = ParseNumber(entries.Slice(i, 12), "sparse offset", headerOffset);
            long len = ParseNumber(entries.Slice(i + 12, 12), "sparse length", headerOffset);
            map.Add((off, len));
        }
    }

    private async ValueTask<IReadOnlyList<(long, long)>> ReadPaxSparseMapAsync(long headerOffset, CancellationToken cancellationToken)
    {
        // pax sparse 1.0: the data starts with decimal lines "count\n(offset\nlength\n)*",
        // padded to a block boundary; the map's bytes are part of the entry's size.
        var numbers = new List<long>();
        long expected = -1;
        var current = new StringBuilder();
        long consumed = 0;
        byte[] one = new byte[1];
        while (expected < 0 || numbers.Count < 1 + (2 * expected))
        {
            int n = await ReadDataAsync(one, cancellationToken);
            if (n == 0)
            {
                throw Error(headerOffset, "sparse map is truncated");
            }
            consumed++;
            if (one[0] == (byte)'\n')
            {
                numbers.Add(ParsePaxLong(current.ToString(), "sparse map", headerOffset));
                current.Clear();
                if (numbers.Count == 1)
                {
                    expected = numbers[0];
                    if (expected < 0 || expected > MaxSparseEntries)
                    {
                        throw Error(headerOffset, $"sparse map claims {expected} entries");
                    }
                }
            }
            else if (current.Length > 20 || !char.IsAsciiDigit((char)one[0]))
            {
                throw Error(headerOffset, "sparse map is malformed");
            }
            else
            {
                current.Append((char)one[0]);
            }
        }
        long pad = (BlockSize - (consumed % BlockSize)) % BlockSize;
        byte[] skip = new byte[pad];
        if (pad > 0 && await ReadDataFullAsync(skip, cancellationToken) != pad)
        {
            throw Error(headerOffset, "sparse map is truncated");
        }
        var map = new List<(long, long)>();
        for (int i = 1; i + 1 < numbers.Count; i += 2)
        {
            map.Add((numbers[i], numbers[i + 1]));
        }
        return map;
    }

    private List<(long, long)> ParseSparseList(string[] parts, long headerOffset)
    {
        if (parts.Length % 2 != 0 || parts.Length / 2 > MaxSparseEntries)
        {
            throw Error(headerOffset, "GNU.sparse.map is malformed");
        }
        var map = new List<(long, long)>();
        for (int i = 0; i < parts.Length; i += 2)
        {
            map.Add((ParsePaxLong(parts[i], "GNU.sparse.map", headerOffset), ParsePaxLong(parts[i + 1], "GNU.sparse.map", headerOffset)));
        }
        return map;
    }

    private async ValueTask<byte[]> ReadBlobAsync(int size, long headerOffset, CancellationToken cancellationToken)
    {
        byte[] data = new byte[size];
        await ReadHeaderDataAsync(data, headerOffset, cancellationToken);
        return data;
    }

    /// <summary>Reads an extended header's data (pax, GNU long name) and skips its padding.</summary>
    private async ValueTask ReadHeaderDataAsync(Memory<byte> destination, long headerOffset, CancellationToken cancellationToken)
    {
        _dataRemaining = destination.Length;
        _paddingRemaining = (BlockSize - (destination.Length % BlockSize)) % BlockSize;
        if (await ReadDataFullAsync(destination, cancellationToken) != destination.Length)
        {
            throw Error(headerOffset, "archive is truncated inside an extended header");
        }
        await SkipRemainingAsync(cancellationToken);
    }

    private bool HasPaxRecord(string key)
    {
        foreach (PaxRecord record in _paxRecords)
        {
            if (string.Equals(record.Key, key, StringComparison.Ordinal))
            {
                return true;
            }
        }
        return _globalPax.ContainsKey(key);
    }

    /// <summary>Reads a pax header's data behind what <see cref="_pax"/> holds already.</summary>
    private async ValueTask ReadPaxDataAsync(int size, long headerOffset, CancellationToken cancellationToken)
    {
        if (_pax.Length < _paxLength + size)
        {
            byte[] grown = new byte[Math.Max(_paxLength + size, Math.Max(1024, _pax.Length * 2))];
            _pax.AsSpan(0, _paxLength).CopyTo(grown);
            _pax = grown;
        }
        await ReadHeaderDataAsync(_pax.AsMemory(_paxLength, size), headerOffset, cancellationToken);
        _paxLength += size;
    }

    /// <summary>Splits the pax records in <c>_pax[start..start+length]</c> into <see cref="_paxRecords"/>.</summary>
    private void ParsePax(int start, int length, long headerOffset)
    {
        ReadOnlySpan<byte> data = _pax.AsSpan(start, length);
        int pos = 0;
        string? error;
        while (TarHeader.TryReadPaxRecord(data, ref pos, out PaxRecordRange r, out error))
        {
            string key = PaxKey(data.Slice(r.KeyStart, r.KeyLength));
            _paxRecords.Add(new PaxRecord(key, start + r.ValueStart, r.ValueLength));
        }
        if (error is not null)
        {
            throw Error(headerOffset, error);
        }
    }

    /// <summary>What pax records can override in a header, gathered in record order.</summary>
    private struct PaxFields
    {
        public byte[] Name;
        public byte[] Link;
        public int Mode;
        public long Size;
        public long RealSize;
        public long Uid;
        public long Gid;
        public TarTime ModificationTime;
        public TarTime? AccessTime;
        public TarTime? ChangeTime;
        public int DeviceMajor;
        public int DeviceMinor;
        public string? SparseMajor;
        public string? SparseMap;
        public List<KeyValuePair<string, byte[]>>? Xattrs;
    }

    private void ApplyPax(ref PaxFields f, string key, ReadOnlySpan<byte> value, long headerOffset)
    {
        // Decoded only for the records that are text (numbers, times): not for names or xattr values.
        switch (key)
        {
            case "path":
                f.Name = value.ToArray();
                break;
            case "linkpath":
                f.Link = value.ToArray();
                break;
            case "size":
                f.Size = ParsePaxLong(value, key, headerOffset);
                f.RealSize = f.Size;
                break;
            case "uid":
                f.Uid = ParsePaxLong(value, key, headerOffset);
                break;
            case "gid":
                f.Gid = ParsePaxLong(value, key, headerOffset);
                break;
            case "mtime":
                f.ModificationTime = ParsePaxTime(value, key, headerOffset);
                break;
            case "atime":
                f.AccessTime = ParsePaxTime(value, key, headerOffset);
                break;
            case "ctime":
                f.ChangeTime = ParsePaxTime(value, key, headerOffset);
                break;
            case "SCHILY.devmajor":
                f.DeviceMajor = (int)ParsePaxLong(value, key, headerOffset);
                break;
            case "SCHILY.devminor":
                f.DeviceMinor = (int)ParsePaxLong(value, key, headerOffset);
                break;
            case "GNU.sparse.major":
                f.SparseMajor = Encoding.UTF8.GetString(value);
                break;
            case "GNU.sparse.name":
                f.Name = value.ToArray();
                break;
            case "GNU.sparse.realsize":
            case "GNU.sparse.size":
                f.RealSize = ParsePaxLong(value, key, headerOffset);
                break;
            case "GNU.sparse.map":
                f.SparseMap = Encoding.UTF8.GetString(value);
                break;
            default:
                if (key.StartsWith("SCHILY.xattr.", StringComparison.Ordinal))
                {
                    AddXattr(ref f.Xattrs, key["SCHILY.xattr.".Length..], value.ToArray());
                }
                else if (key.StartsWith("LIBARCHIVE.xattr.", StringComparison.Ordinal))
                {
                    string xname = Uri.UnescapeDataString(key["LIBARCHIVE.xattr.".Length..]);
                    try
                    {
                        AddXattr(ref f.Xattrs, xname, Convert.FromBase64String(Encoding.UTF8.GetString(value)));
                    }
                    catch (FormatException)
                    {
                        throw Error(headerOffset, $"xattr '{xname}' has a value that is not base64");
                    }
                }
                break;
        }
    }

    /// <summary>Adds an xattr, replacing an earlier record of the same name (a global one, or a repeated key).</summary>
    private static void AddXattr(ref List<KeyValuePair<string, byte[]>>? xattrs, string name, byte[] value)
    {
        xattrs ??= [];
        int at = xattrs.FindIndex(x => string.Equals(x.Key, name, StringComparison.Ordinal));
        if (at >= 0)
        {
            xattrs[at] = new(name, value);
        }
        else
        {
            xattrs.Add(new(name, value));
        }
    }

    /// <summary>The pax keys every writer repeats per entry, as literals rather than a new string each.</summary>
    private static string PaxKey(ReadOnlySpan<byte> key) => key switch
    {
        _ when key.SequenceEqual("path"u8) => "path",
        _ when key.SequenceEqual("linkpath"u8) => "linkpath",
        _ when key.SequenceEqual("size"u8) => "size",
        _ when key.SequenceEqual("uid"u8) => "uid",
        _ when key.SequenceEqual("gid"u8) => "gid",
        _ when key.SequenceEqual("uname"u8) => "uname",
        _ when key.SequenceEqual("gname"u8) => "gname",
        _ when key.SequenceEqual("mtime"u8) => "mtime",
        _ when key.SequenceEqual("atime"u8) => "atime",
        _ when key.SequenceEqual("ctime"u8) => "ctime",
        _ => Encoding.UTF8.GetString(key),
    };

    private long ParsePaxLong(ReadOnlySpan<byte> text, string key, long headerOffset)
    {
        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
        {
            throw Error(headerOffset, $"pax record '{key}' is not a number: '{Truncate(Encoding.UTF8.GetString(text))}'");
        }
        return v;
    }

    private long ParsePaxLong(string text, string key, long headerOffset) => ParsePaxLong(Encoding.UTF8.GetBytes(text), key, headerOffset);

    private TarTime ParsePaxTime(ReadOnlySpan<byte> text, string key, long headerOffset)
    {
        if (!TarTime.TryParse(text, out TarTime time))
        {
            throw Error(headerOffset, $"pax record '{key}' is not a time: '{Truncate(Encoding.UTF8.GetString(text))}'");
        }
        return time;
    }

    private static string Truncate(string s) => s.Length > 40 ? s[..40] + "..." : s;

    private void VerifyChecksum(byte[] header, long headerOffset)
    {
        if (!TarHeader.ChecksumMatches(header))
        {
            _ = ParseNumber(header.AsSpan(TarHeader.ChecksumOffset, TarHeader.ChecksumLength), "checksum", headerOffset);
            throw Error(headerOffset, "header checksum does not match (corrupt or not a tar archive)");
        }
    }

    private long ParseNumber(ReadOnlySpan<byte> field, string what, long headerOffset) =>
        TarHeader.ParseNumber(field, out long value) is { } problem ? throw Error(headerOffset, $"{what} {problem}") : value;

    private static byte[] TrimNul(ReadOnlySpan<byte> field)
    {
        ReadOnlySpan<byte> value = TrimNulSpan(field);
        return value.IsEmpty ? [] : value.ToArray();
    }

    private static ReadOnlySpan<byte> TrimNulSpan(ReadOnlySpan<byte> field)
    {
        int nul = field.IndexOf((byte)0);
        return nul < 0 ? field : field[..nul];
    }

    private static byte[] TrimNul(byte[] data)
    {
        int nul = Array.IndexOf(data, (byte)0);
        return nul < 0 ? data : data[..nul];
    }

    private async ValueTask SkipRemainingAsync(CancellationToken cancellationToken)
    {
        long toSkip = _dataRemaining + _paddingRemaining;
        _dataRemaining = 0;
        _paddingRemaining = 0;
        while (toSkip > 0)
        {
            if (_bufferPos == _bufferLen && !await FillAsync(cancellationToken))
            {
                throw Error(_position, "archive is truncated inside entry data");
            }
            int n = (int)Math.Min(toSkip, _bufferLen - _bufferPos);
            _bufferPos += n;
            _position += n;
            toSkip -= n;
        }
    }

    /// <summary>
    /// Reads until <paramref name="destination"/> is full or the input ends: the current entry's
    /// data when <paramref name="entryData"/> (its end counts as the end), else the raw archive.
    /// </summary>
    private async ValueTask<int> ReadFullAsync(Memory<byte> destination, bool entryData, CancellationToken cancellationToken)
    {
        int total = 0;
        while (total < destination.Length)
        {
            int n = entryData
                ? await ReadDataAsync(destination[total..], cancellationToken)
                : await ReadSomeAsync(destination[total..], cancellationToken);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }

    private async ValueTask<int> ReadSomeAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (_bufferPos == _bufferLen)
        {
            if (_lender is null && destination.Length >= _buffer.Length / 2)
            {
                // Large reads bypass the buffer: one copy less for file data.
                int direct = await _stream.ReadAsync(destination, cancellationToken);
                _position += direct;
                return direct;
            }
            if (!await FillAsync(cancellationToken))
            {
                return 0;
            }
        }
        int n = Math.Min(destination.Length, _bufferLen - _bufferPos);
        _window.AsMemory(_bufferPos, n).CopyTo(destination);
        _bufferPos += n;
        _position += n;
        return n;
    }

    private async ValueTask<bool> FillAsync(CancellationToken cancellationToken)
    {
        if (_lender is not null)
        {
            ArraySegment<byte> lent = await _lender.ReadLentAsync(cancellationToken);
            _window = lent.Count > 0 ? lent.Array! : _buffer;
            _bufferPos = lent.Count > 0 ? lent.Offset : 0;
            _bufferLen = _bufferPos + lent.Count;
            return lent.Count > 0;
        }
        _bufferPos = 0;
        _bufferLen = await _stream.ReadAsync(_buffer, cancellationToken);
        return _bufferLen > 0;
    }

    private InvalidDataException Error(long offset, string message) => new($"{_context}: {message} (at byte {offset})");
}
