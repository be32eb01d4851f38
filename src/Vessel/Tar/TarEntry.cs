namespace Vessel.Tar;

/// <summary>
/// One tar entry after pax and GNU extension headers were folded in. Names and link
/// targets are kept as raw bytes decoded with UTF-8 only for display: ext4 stores bytes.
/// </summary>
public sealed class TarEntry
{
    public required string Name { get; init; }
    public required byte[] NameBytes { get; init; }
    public required TarEntryType Type { get; init; }
    public string LinkName { get; init; } = string.Empty;
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
    {
        // pax: "[-]seconds[.fraction]"
        int dot = text.IndexOf('.', StringComparison.Ordinal);
        string whole = dot < 0 ? text : text[..dot];
        if (!long.TryParse(whole, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long seconds))
        {
            throw new InvalidDataException($"bad pax time '{text}'");
        }
        int nanos = 0;
        if (dot >= 0)
        {
            string frac = text[(dot + 1)..];
            if (frac.Length > 9)
            {
                frac = frac[..9];
            }
            if (frac.Length > 0 && !frac.All(char.IsAsciiDigit))
            {
                throw new InvalidDataException($"bad pax time '{text}'");
            }
            nanos = frac.Length == 0 ? 0 : int.Parse(frac.PadRight(9, '0'), System.Globalization.CultureInfo.InvariantCulture);
            if (text.StartsWith('-') && nanos > 0)
            {
                seconds -= 1;
                nanos = 1_000_000_000 - nanos;
            }
        }
        return new TarTime(seconds, nanos);
    }
}
