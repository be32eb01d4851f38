using System.Runtime.Intrinsics;

namespace Vessel.Tar;

/// <summary>
/// The parsing rules of a tar header block that both the streaming <see cref="TarReader"/> and
/// the random-access image archive index use: numeric fields (octal, or GNU base-256), the
/// header checksum, and pax extended header records (POSIX.1-2017 "pax", "ustar Interchange
/// Format" and "pax Extended Header"). Errors are returned as text: each caller words where.
/// </summary>
public static class TarHeader
{
    public const int BlockSize = 512;
    public const int ChecksumOffset = 148;
    public const int ChecksumLength = 8;

    /// <summary>An octal field (leading spaces or NULs, ending at a NUL or space), or GNU base-256 when the first byte's high bit is set.</summary>
    /// <returns>Null, or what is wrong with the field.</returns>
    public static string? ParseNumber(ReadOnlySpan<byte> field, out long value)
    {
        value = 0;
        if (field.Length > 0 && (field[0] & 0x80) != 0)
        {
            // GNU base-256: big-endian two's complement in the remaining bits.
            bool negative = (field[0] & 0x40) != 0;
            long v = field[0] & 0x3F;
            if (negative)
            {
                v |= ~0x3FL;
            }
            for (int i = 1; i < field.Length; i++)
            {
                if (!negative && v > (long.MaxValue >> 8))
                {
                    return "field overflows";
                }
                v = (v << 8) | field[i];
            }
            value = v;
            return null;
        }
        long result = 0;
        int idx = 0;
        while (idx < field.Length && (field[idx] == ' ' || field[idx] == 0))
        {
            idx++;
        }
        for (; idx < field.Length; idx++)
        {
            byte c = field[idx];
            if (c == 0 || c == ' ')
            {
                break;
            }
            if (c is < (byte)'0' or > (byte)'7')
            {
                return "field is not an octal number";
            }
            if (result > (long.MaxValue >> 3))
            {
                return "field overflows";
            }
            result = (result << 3) | (long)(c - '0');
        }
        value = result;
        return null;
    }

    /// <summary>
    /// Whether the stored checksum matches the sum of the block's bytes with the checksum field
    /// counted as eight spaces; old tars that summed signed chars are accepted too.
    /// </summary>
    public static bool ChecksumMatches(ReadOnlySpan<byte> block)
    {
        if (ParseNumber(block.Slice(ChecksumOffset, ChecksumLength), out long stored) is not null)
        {
            return false;
        }
        block = block[..BlockSize];
        long unsignedSum = ByteSum(block) - ByteSum(block.Slice(ChecksumOffset, ChecksumLength)) + (ChecksumLength * ' ');
        if (stored == unsignedSum)
        {
            return true;
        }
        long signedSum = unsignedSum;
        if (block.IndexOfAnyInRange((byte)0x80, (byte)0xFF) >= 0)
        {
            // Each byte of 0x80 and above counts 256 less as a signed char.
            for (int i = 0; i < BlockSize; i++)
            {
                if (block[i] >= 0x80 && i is not (>= ChecksumOffset and < ChecksumOffset + ChecksumLength))
                {
                    signedSum -= 256;
                }
            }
        }
        return stored == signedSum;
    }

    /// <summary>
    /// Reads the pax record at <paramref name="pos"/> ("LENGTH KEY=VALUE\n", LENGTH counting the
    /// whole record) and moves past it. False at the end of the data or at NUL padding, or with
    /// <paramref name="error"/> set when the record is malformed.
    /// </summary>
    public static bool TryReadPaxRecord(ReadOnlySpan<byte> data, ref int pos, out PaxRecordRange record, out string? error)
    {
        record = default;
        error = null;
        if (pos >= data.Length || data[pos] == 0)
        {
            return false; // some writers pad with NULs
        }
        int space = data[pos..].IndexOf((byte)' ');
        if (space < 0 || space > 10)
        {
            error = "pax record has no length";
            return false;
        }
        space += pos;
        int recordLength = 0;
        foreach (byte digit in data[pos..space])
        {
            // At most 10 digits (checked above), no sign or spaces.
            if (digit is < (byte)'0' or > (byte)'9' || recordLength > (int.MaxValue - 9) / 10)
            {
                error = "pax record has a bad length";
                return false;
            }
            recordLength = (recordLength * 10) + (digit - '0');
        }
        if (space == pos || recordLength < space - pos + 3 || recordLength > data.Length - pos || data[pos + recordLength - 1] != (byte)'\n')
        {
            error = "pax record has a bad length";
            return false;
        }
        int eq = data.Slice(space + 1, pos + recordLength - space - 1).IndexOf((byte)'=');
        if (eq < 0)
        {
            error = "pax record has no '='";
            return false;
        }
        eq += space + 1;
        record = new PaxRecordRange(space + 1, eq - space - 1, eq + 1, pos + recordLength - 1 - (eq + 1));
        pos += recordLength;
        return true;
    }

    /// <summary>The sum of <paramref name="data"/>'s bytes (a header block: at most 2 KiB, so 16-bit lanes cannot overflow).</summary>
    private static long ByteSum(ReadOnlySpan<byte> data)
    {
        long sum = 0;
        int i = 0;
        if (Vector128.IsHardwareAccelerated && data.Length >= Vector128<byte>.Count)
        {
            Vector128<ushort> acc = Vector128<ushort>.Zero;
            for (; i + Vector128<byte>.Count <= data.Length; i += Vector128<byte>.Count)
            {
                (Vector128<ushort> lower, Vector128<ushort> upper) = Vector128.Widen(Vector128.Create(data.Slice(i, Vector128<byte>.Count)));
                acc += lower + upper;
            }
            sum = Vector128.Sum(Vector128.WidenLower(acc)) + Vector128.Sum(Vector128.WidenUpper(acc));
        }
        for (; i < data.Length; i++)
        {
            sum += data[i];
        }
        return sum;
    }
}

/// <summary>Where a pax record's key and value lie in the header data.</summary>
public readonly record struct PaxRecordRange(int KeyStart, int KeyLength, int ValueStart, int ValueLength);
