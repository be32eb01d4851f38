namespace Vessel.Blocks;

/// <summary>Bit operations on the per-block bitmaps that copy-on-write devices keep (one bit per block, thread-safe).</summary>
internal static class DirtyBits
{
    /// <summary>Sets or clears bits [start, end) atomically, a word at a time.</summary>
    public static void SetRange(ulong[] bits, long start, long end, bool value)
    {
        for (long b = start; b < end;)
        {
            long word = b >> 6;
            int from = (int)(b & 63);
            int count = (int)Math.Min(64 - from, end - b);
            ulong mask = count == 64 ? ulong.MaxValue : ((1UL << count) - 1) << from;
            if (value)
            {
                Interlocked.Or(ref bits[word], mask);
            }
            else
            {
                Interlocked.And(ref bits[word], ~mask);
            }
            b += count;
        }
    }

    public static long CountBits(ulong[] bits)
    {
        long n = 0;
        foreach (ulong w in bits)
        {
            n += System.Numerics.BitOperations.PopCount(w);
        }
        return n;
    }
}
