namespace Vessel.Blocks;

/// <summary>Operations on sorted, gap-free mappings (<see cref="BuildMappingEntry"/> lists).</summary>
internal static class BuildMapping
{
    /// <summary>The index of the extent that holds <paramref name="offset"/> (binary search).</summary>
    public static int Find(IReadOnlyList<BuildMappingEntry> mapping, long offset)
    {
        int lo = 0;
        int hi = mapping.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (mapping[mid].Offset <= offset)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return lo;
    }

    /// <summary>Appends an extent, merging it into the last one when it continues it.</summary>
    public static void Append(List<BuildMappingEntry> mapping, BuildMappingEntry e)
    {
        if (mapping.Count > 0)
        {
            BuildMappingEntry last = mapping[^1];
            bool continues = last.End == e.Offset && last.BuildId == e.BuildId
                && (e.IsZero || last.StorageOffset + last.Length == e.StorageOffset);
            if (continues)
            {
                mapping[^1] = last with { Length = last.Length + e.Length };
                return;
            }
        }
        mapping.Add(e);
    }

    /// <summary>
    /// Lays <paramref name="overlay"/> (sorted, non-overlapping, any coverage) over the gap-free
    /// <paramref name="parent"/> mapping: the result is gap-free over the same device, and its
    /// cost is proportional to the number of extents, not to the device size.
    /// </summary>
    public static List<BuildMappingEntry> Merge(IReadOnlyList<BuildMappingEntry> parent, IReadOnlyList<BuildMappingEntry> overlay)
    {
        var result = new List<BuildMappingEntry>(parent.Count + (2 * overlay.Count));
        long size = parent.Count == 0 ? 0 : parent[^1].End;
        long pos = 0;
        foreach (BuildMappingEntry o in overlay)
        {
            CopyRange(parent, pos, o.Offset, result);
            Append(result, o);
            pos = o.End;
        }
        CopyRange(parent, pos, size, result);
        return result;
    }

    /// <summary>Appends the parts of <paramref name="mapping"/> inside <c>[start, end)</c>.</summary>
    public static void CopyRange(IReadOnlyList<BuildMappingEntry> mapping, long start, long end, List<BuildMappingEntry> into)
    {
        if (start >= end)
        {
            return;
        }
        for (int i = Find(mapping, start); i < mapping.Count && mapping[i].Offset < end; i++)
        {
            BuildMappingEntry e = mapping[i];
            long from = Math.Max(start, e.Offset);
            long to = Math.Min(end, e.End);
            Append(into, e.IsZero
                ? BuildMappingEntry.Zero(from, to - from)
                : new BuildMappingEntry(from, to - from, e.BuildId, e.StorageOffset + (from - e.Offset)));
        }
    }
}
