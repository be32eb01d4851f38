using System.Globalization;
using Vessel.Guest;
using Vessel.Vmm;

namespace Vessel.Sandboxes;

/// <summary>
/// Why a guest did not reach its agent, told from what is left: the failure marker that the
/// guest's init prints for a failed stage (<see cref="InitScript.FailureMarker"/>), how QEMU
/// ended and what it wrote to stderr, or a timeout with the last stage the console shows.
/// Every message quotes the console tail; none is a bare "connection reset".
/// </summary>
internal static class GuestBootFailure
{
    private static readonly TimeSpan s_pollInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>Completes when the console shows a failed stage (checked every 100 ms); runs until cancelled otherwise.</summary>
    public static async Task WatchAsync(string consoleLog, CancellationToken cancellationToken)
    {
        long offset = 0;
        string carry = string.Empty;
        while (true)
        {
            await Task.Delay(s_pollInterval, cancellationToken);
            (string text, offset) = ReadFrom(consoleLog, offset);
            carry += text;
            if (carry.Contains(InitScript.FailureMarker, StringComparison.Ordinal) && carry.LastIndexOf('\n') > carry.IndexOf(InitScript.FailureMarker, StringComparison.Ordinal))
            {
                return;
            }
            // Keep only a partial last line for the next round.
            int newline = carry.LastIndexOf('\n');
            carry = newline >= 0 ? carry[(newline + 1)..] : carry;
        }
    }

    /// <summary>The stage and reason of the first failure marker on the console, or null.</summary>
    public static (string Stage, string Reason)? FindFailure(string consoleText)
    {
        foreach (string line in consoleText.Split('\n'))
        {
            int at = line.IndexOf(InitScript.FailureMarker, StringComparison.Ordinal);
            if (at < 0)
            {
                continue;
            }
            string rest = line[(at + InitScript.FailureMarker.Length)..].TrimEnd('\r');
            int failed = rest.IndexOf(" failed: ", StringComparison.Ordinal);
            return failed < 0 ? (rest, string.Empty) : (rest[..failed], rest[(failed + " failed: ".Length)..]);
        }
        return null;
    }

    /// <summary>The error for a guest that did not reach its agent, named after what the console and the VMM show.</summary>
    public static VesselException Describe(string sandboxId, IVirtualMachine vm, string consoleLog, TimeSpan bootTimeout, Exception? cause)
    {
        string console = ReadFrom(consoleLog, 0).Text;
        string tail = vm.ConsoleTail();
        if (FindFailure(console) is { } failure)
        {
            return new VesselException(VesselErrorReason.Unavailable,
                $"Sandbox {sandboxId}: the guest failed at stage '{failure.Stage}': {failure.Reason}\nConsole:\n{tail}", cause);
        }
        if (vm.Exited.IsCompleted)
        {
            return new VesselException(VesselErrorReason.Unavailable,
                $"Sandbox {sandboxId}: the VM stopped before its agent was ready ({LastStage(console)}): {vm.ExitReport}\nConsole:\n{tail}", cause);
        }
        if (cause is TimeoutException)
        {
            return new VesselException(VesselErrorReason.Timeout,
                $"Sandbox {sandboxId}: the guest did not reach its agent within {bootTimeout.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture)} s ({LastStage(console)}).\nConsole:\n{tail}", cause);
        }
        return new VesselException(VesselErrorReason.Unavailable,
            $"Sandbox {sandboxId}: the guest agent connection failed ({cause?.Message}) while the VM runs ({LastStage(console)}).\nConsole:\n{tail}", cause);
    }

    /// <summary>"last guest progress: vessel-init: starting agent at 1.23s", from the console's init lines.</summary>
    private static string LastStage(string console)
    {
        string? last = console.Split('\n').LastOrDefault(l => l.Contains("vessel-init: ", StringComparison.Ordinal))?.Trim();
        return last is null ? "the console shows no line of Vessel's init" : "last guest progress: " + last[last.IndexOf("vessel-init: ", StringComparison.Ordinal)..];
    }

    private static (string Text, long Offset) ReadFrom(string path, long offset)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            if (stream.Length <= offset)
            {
                return (string.Empty, offset);
            }
            // The console of a failed boot is small; cap what one call reads.
            long start = Math.Max(offset, stream.Length - (1 << 20));
            stream.Seek(start, SeekOrigin.Begin);
            using var reader = new StreamReader(stream);
            string text = reader.ReadToEnd();
            return (text, stream.Length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (string.Empty, offset);
        }
    }
}
