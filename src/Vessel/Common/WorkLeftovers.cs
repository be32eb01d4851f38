namespace Vessel.Common;

/// <summary>
/// Working directories that carry their owner (<c>KIND-PID-START.RANDOM</c>, see
/// <see cref="ProcessOwner"/>), so that a later run, or <c>vessel sandbox sweep</c>, removes
/// those of a process that was killed: FUSE mounts left inside are detached first
/// (<c>fusermount3 -u -z</c>: a killed nbdfuse leaves "Transport endpoint is not connected").
/// </summary>
public static class WorkLeftovers
{
    /// <summary>The prefix for <see cref="TempDirectory.Create"/>: <c>KIND-PID-START.</c></summary>
    public static string Prefix(string kind) => $"{kind}-{ProcessOwner.Current}.";

    /// <summary>Removes the owned directories in <paramref name="parent"/> whose owner is gone; returns them.</summary>
    public static async Task<IReadOnlyList<string>> ReclaimAsync(string parent, CancellationToken cancellationToken)
    {
        var removed = new List<string>();
        foreach (string dir in Find(parent))
        {
            foreach (string mount in MountsUnder(dir))
            {
                ProcessResult r = await ExternalProcess.RunAsync("fusermount3", ["-u", "-z", mount], cancellationToken, timeout: TimeSpan.FromSeconds(20));
                if (!r.Succeeded)
                {
                    throw new VesselException(VesselErrorReason.ToolFailed, $"cannot detach the leftover mount {mount}: {r.StandardError.Trim()}");
                }
            }
            Directory.Delete(dir, recursive: true);
            removed.Add(dir);
        }
        return removed;
    }

    /// <summary>
    /// Deletes leftover <paramref name="files"/> (a dead owner's caches or partial outputs) and
    /// returns those it removed; one it may not remove (another user's) or that went meanwhile is skipped.
    /// </summary>
    public static IReadOnlyList<string> DeleteFiles(IEnumerable<string> files)
    {
        var removed = new List<string>();
        foreach (string file in files)
        {
            try
            {
                File.Delete(file);
                removed.Add(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another user's leftover, or removed meanwhile: not ours to remove.
            }
        }
        return removed;
    }

    /// <summary>The owned directories in <paramref name="parent"/> whose owner is gone: what <see cref="ReclaimAsync"/> removes.</summary>
    public static IReadOnlyList<string> Find(string parent)
    {
        if (!Directory.Exists(parent))
        {
            return [];
        }
        return Directory.EnumerateDirectories(parent).Where(dir => OwnerOf(Path.GetFileName(dir)) is string owner && !ProcessOwner.IsAlive(owner)).ToList();
    }

    /// <summary>The owner in <c>KIND-PID-START.RANDOM</c>, or null for any other name.</summary>
    internal static string? OwnerOf(string name)
    {
        int dot = name.IndexOf('.', StringComparison.Ordinal);
        int dash = name.IndexOf('-', StringComparison.Ordinal);
        if (dot < 0 || dash < 0 || dash > dot)
        {
            return null;
        }
        string owner = name[(dash + 1)..dot];
        return ProcessOwner.IsStamp(owner) ? owner : null;
    }

    /// <summary>FUSE mount points at or below <paramref name="dir"/>, deepest first (/proc/self/mountinfo).</summary>
    private static List<string> MountsUnder(string dir)
    {
        var mounts = new List<string>();
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            string[] fields = line.Split(' ');
            int separator = Array.IndexOf(fields, "-");
            if (fields.Length < 5 || separator < 0 || separator + 1 >= fields.Length || !fields[separator + 1].StartsWith("fuse", StringComparison.Ordinal))
            {
                continue;
            }
            string point = Unescape(fields[4]);
            if (point == dir || point.StartsWith(dir + "/", StringComparison.Ordinal))
            {
                mounts.Add(point);
            }
        }
        return mounts.OrderByDescending(m => m.Length).ToList();
    }

    /// <summary>mountinfo writes space, tab, newline and backslash as \ooo.</summary>
    private static string Unescape(string field)
    {
        var sb = new System.Text.StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length && !field.AsSpan(i + 1, 3).ContainsAnyExceptInRange('0', '7'))
            {
                sb.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                sb.Append(field[i]);
            }
        }
        return sb.ToString();
    }
}
