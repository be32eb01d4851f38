using System.Globalization;

namespace Vessel.Common;

/// <summary>
/// Who owns a leftover: a process id with its start time (field 22 of /proc/PID/stat, in clock
/// ticks since boot), written as <c>PID-START</c>. A pid alone could be recycled by another
/// process after a crash; the pair cannot.
/// </summary>
public static class ProcessOwner
{
    private static readonly Lazy<string> s_current = new(() => Stamp(Environment.ProcessId)
        ?? throw new InvalidOperationException("cannot read /proc/self/stat"));

    /// <summary>This process's stamp.</summary>
    public static string Current => s_current.Value;

    /// <summary>The stamp of a running process, or null if there is none with that id.</summary>
    public static string? Stamp(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return $"{pid.ToString(CultureInfo.InvariantCulture)}-{rest[19]}";
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Whether <paramref name="stamp"/> (<c>PID-START</c>) names a process that still runs.</summary>
    public static bool IsAlive(string stamp)
    {
        int dash = stamp.IndexOf('-', StringComparison.Ordinal);
        return dash > 0
            && int.TryParse(stamp.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
            && Stamp(pid) == stamp;
    }

    /// <summary>Whether <paramref name="text"/> has the form of a stamp (digits, a dash, digits).</summary>
    public static bool IsStamp(ReadOnlySpan<char> text)
    {
        int dash = text.IndexOf('-');
        return dash > 0 && dash < text.Length - 1 && !text[..dash].ContainsAnyExceptInRange('0', '9') && !text[(dash + 1)..].ContainsAnyExceptInRange('0', '9');
    }
}
