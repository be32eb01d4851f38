namespace Vessel.Ext4;

/// <summary>
/// Hands out data blocks while the image streams: first fit from blocks freed by a later
/// layer, otherwise from a bump pointer that skips reserved ranges (backup superblocks).
/// The final bitmaps are rebuilt from the live inodes, so this only has to never hand out
/// a block twice.
/// </summary>
internal sealed class BlockAllocator
{
    private readonly List<(long Start, long Length)> _free = [];
    private readonly List<(long Start, long Length)> _reserved;
    private long _freeTotal;

    public BlockAllocator(long firstBlock, long limit, IEnumerable<(long Start, long Length)> reserved)
    {
        Next = firstBlock;
        Limit = limit;
        _reserved = reserved.OrderBy(r => r.Start).ToList();
    }

    /// <summary>The bump pointer: every block at or above it is untouched.</summary>
    public long Next { get; private set; }

    /// <summary>Blocks past this one do not exist (fixed-size images); long.MaxValue when the size is derived.</summary>
    public long Limit { get; set; }

    public long FreeListBlocks => _freeTotal;

    /// <summary>Allocates <paramref name="count"/> blocks as one or more runs, in order, into <paramref name="runs"/> (cleared first: the caller reuses one list).</summary>
    public List<(long Start, long Length)> Allocate(long count, List<(long Start, long Length)> runs)
    {
        runs.Clear();
        if (count <= 0)
        {
            return runs;
        }
        // 1. A freed hole big enough for the whole request keeps the file contiguous.
        if (_freeTotal >= count)
        {
            for (int i = 0; i < _free.Count; i++)
            {
                var (s, l) = _free[i];
                if (l >= count)
                {
                    runs.Add((s, count));
                    if (l == count)
                    {
                        _free.RemoveAt(i);
                    }
                    else
                    {
                        _free[i] = (s + count, l - count);
                    }
                    _freeTotal -= count;
                    return runs;
                }
            }
        }
        // 2. The bump pointer, skipping reserved ranges.
        long remaining = count;
        long available = BumpAvailable();
        if (available < remaining)
        {
            // 3. Fixed size and the tail is short: use freed fragments too.
            if (available + _freeTotal < remaining)
            {
                throw new VesselException(VesselErrorReason.NoSpace, "the image is full");
            }
            while (remaining > available && _free.Count > 0)
            {
                var (s, l) = _free[^1];
                long take = Math.Min(l, remaining - available);
                runs.Add((s + l - take, take));
                if (take == l)
                {
                    _free.RemoveAt(_free.Count - 1);
                }
                else
                {
                    _free[^1] = (s, l - take);
                }
                _freeTotal -= take;
                remaining -= take;
            }
        }
        while (remaining > 0)
        {
            SkipReserved();
            long until = NextReservedStart() - Next;
            long take = Math.Min(remaining, until);
            runs.Add((Next, take));
            Next += take;
            remaining -= take;
        }
        return runs;
    }

    /// <summary>Allocates a contiguous run past everything handed out so far (metadata at finish).</summary>
    public long AllocateContiguous(long count)
    {
        while (true)
        {
            SkipReserved();
            long until = NextReservedStart() - Next;
            if (until >= count)
            {
                long start = Next;
                Next += count;
                if (Next > Limit)
                {
                    throw new VesselException(VesselErrorReason.NoSpace, "the image is full");
                }
                return start;
            }
            Next += until; // leave the gap before the reserved range unused
        }
    }

    public void Free(long start, long length)
    {
        if (length <= 0)
        {
            return;
        }
        if (start + length == Next)
        {
            Next = start; // the common case: a file's unused tail
            return;
        }
        int i = 0;
        while (i < _free.Count && _free[i].Start < start)
        {
            i++;
        }
        _free.Insert(i, (start, length));
        _freeTotal += length;
        // Merge with neighbours.
        if (i + 1 < _free.Count && _free[i].Start + _free[i].Length == _free[i + 1].Start)
        {
            _free[i] = (_free[i].Start, _free[i].Length + _free[i + 1].Length);
            _free.RemoveAt(i + 1);
        }
        if (i > 0 && _free[i - 1].Start + _free[i - 1].Length == _free[i].Start)
        {
            _free[i - 1] = (_free[i - 1].Start, _free[i - 1].Length + _free[i].Length);
            _free.RemoveAt(i);
        }
    }

    private long BumpAvailable()
    {
        if (Limit == long.MaxValue)
        {
            return long.MaxValue;
        }
        long reservedAhead = 0;
        foreach (var (s, l) in _reserved)
        {
            long end = s + l;
            if (end > Next && s < Limit)
            {
                reservedAhead += Math.Min(end, Limit) - Math.Max(s, Next);
            }
        }
        return Math.Max(0, Limit - Next - reservedAhead);
    }

    private void SkipReserved()
    {
        foreach (var (s, l) in _reserved)
        {
            if (Next >= s && Next < s + l)
            {
                Next = s + l;
            }
        }
    }

    private long NextReservedStart()
    {
        foreach (var (s, _) in _reserved)
        {
            if (s >= Next)
            {
                return s;
            }
        }
        return long.MaxValue;
    }
}
