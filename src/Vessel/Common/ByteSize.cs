using System.Globalization;

namespace Vessel.Common;

/// <summary>Parses and prints sizes such as <c>2G</c>, <c>512M</c>, <c>4096</c> (powers of 1024).</summary>
public static class ByteSize
{
    public static long Parse(string text)
    {
        if (!TryParse(text, out long value))
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"'{text}' is not a size: use a number of bytes or a number with K, M, G or T (powers of 1024), e.g. 512M.");
        }
        return value;
    }

    public static bool TryParse(string? text, out long value)
    {
        value = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        string s = text.Trim();
        long multiplier = 1;
        string upper = s.ToUpperInvariant();
        if (upper.EndsWith("IB", StringComparison.Ordinal))
        {
            upper = upper[..^2];
        }
        else if (upper.EndsWith('B'))
        {
            upper = upper[..^1];
        }
        if (upper.Length > 0)
        {
            char unit = upper[^1];
            multiplier = unit switch
            {
                'K' => 1L << 10,
                'M' => 1L << 20,
                'G' => 1L << 30,
                'T' => 1L << 40,
                _ => 1,
            };
            if (multiplier != 1)
            {
                upper = upper[..^1];
            }
        }
        if (!decimal.TryParse(upper, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal number) || number < 0)
        {
            return false;
        }
        decimal bytes = number * multiplier;
        if (bytes > long.MaxValue)
        {
            return false;
        }
        value = (long)bytes;
        return true;
    }

    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        int u = 0;
        while (Math.Abs(v) >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return u == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{v:0.##} {units[u]}");
    }
}
