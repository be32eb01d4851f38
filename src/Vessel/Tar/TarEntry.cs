using System.Text;

namespace Vessel.Tar;

/// <summary>
/// One tar entry after pax and GNU extension headers were folded in. Names and link
/// targets are kept as raw bytes decoded with UTF-8 only for display: ext4 stores bytes.
/// </summary>
public sealed class TarEntry
{
    private string? _name;
    private string? _linkName;

    /// <summary>The name decoded for messages (made on first use: most entries never need it).</summary>
    public string Name => _name ??= Encoding.UTF8.GetString(NameBytes);

    public required byte[] NameBytes { get; init; }
    public required TarEntryType Type { get; init; }

    /// <summary>The link target decoded for messages.</summary>
    public string LinkName => _linkName ??= Encoding.UTF8.GetString(LinkNameBytes);

    public byte[] LinkNameBytes { get; init; } = [];
    public int Mode { get; init; }
    public long Uid { get; init; }
    public long Gid { get; init; }

    /// <summary>Bytes of data that follow the header in the archive.</summary>
    public long DataLength { get; init; }

    /// <summary>Logical file size (differs from <see cref="DataLength"/> for sparse entries).</summary>
    public long Size { get; init; }

    /// <summary>Data regions of a sparse file as (offset, length) in the logical file; null when not sparse.</summary>
    public IReadOnlyList<(long Offset, long Length)>? SparseMap { get; init; }

    public required TarTime ModificationTime { get; init; }
    public TarTime? AccessTime { get; init; }
    public TarTime? ChangeTime { get; init; }
    public int DeviceMajor { get; init; }
    public int DeviceMinor { get; init; }

    /// <summary>Extended attributes from SCHILY.xattr.* / LIBARCHIVE.xattr.* records, values as raw bytes.</summary>
    public IReadOnlyList<KeyValuePair<string, byte[]>> Xattrs { get; init; } = [];

    /// <summary>Offset of this entry's header in the uncompressed stream, for messages.</summary>
    public long HeaderOffset { get; init; }

    public bool IsRegularFile => Type is TarEntryType.RegularFile or TarEntryType.OldRegularFile or TarEntryType.ContiguousFile or TarEntryType.GnuSparse;
}

/// <summary>Seconds since the epoch plus nanoseconds, as tar (pax) carries them.</summary>
public readonly record struct TarTime(long Seconds, int Nanoseconds)
{
    public static TarTime Parse(string text)
        => TryParse(Encoding.UTF8.GetBytes(text), out TarTime time) ? time : throw new InvalidDataException($"bad pax time '{text}'");

    /// <summary>pax: "[-]seconds[.fraction]", read from the record's bytes without a string.</summary>
    public static bool TryParse(ReadOnlySpan<byte> text, out TarTime time)
    {
        time = default;
        int dot = text.IndexOf((byte)'.');
        ReadOnlySpan<byte> whole = dot < 0 ? text : text[..dot];
        if (!long.TryParse(whole, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long seconds))
        {
            return false;
        }
        int nanos = 0;
        if (dot >= 0)
        {
            ReadOnlySpan<byte> frac = text[(dot + 1)..];
            if (frac.Length > 9)
            {
                frac = frac[..9];
            }
            if (frac.IndexOfAnyExceptInRange((byte)'0', (byte)'9') >= 0)
            {
                return false;
            }
            for (int i = 0; i < 9; i++)
            {
                nanos = (nanos * 10) + (i < frac.Length ? frac[i] - '0' : 0);
            }
            if (text[0] == (byte)'-' && nanos > 0)
            {
                seconds -= 1;
                nanos = 1_000_000_000 - nanos;
            }
        }
        time = new TarTime(seconds, nanos);
        return true;
    }
}
