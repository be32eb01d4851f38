using System.Text;

namespace Vessel.Client;

/// <summary>A finished command: its exit status and everything it wrote.</summary>
public sealed class CommandResult
{
    internal CommandResult()
    {
    }

    /// <summary>The command's process id in the guest.</summary>
    public int Pid { get; internal init; }

    /// <summary>The exit code; 128 + the signal when a signal ended it (as a shell reports it).</summary>
    public int ExitCode { get; internal init; }

    /// <summary>The signal that ended the command, or null when it exited.</summary>
    public int? Signal { get; internal init; }

    /// <summary>True when the daemon killed the command because its <see cref="CommandOptions.Timeout"/> passed.</summary>
    public bool TimedOut { get; internal init; }

    /// <summary>Everything the command wrote to stdout, decoded as UTF-8.</summary>
    public string Stdout => Encoding.UTF8.GetString(StdoutBytes.Span);

    /// <summary>Everything the command wrote to stderr, decoded as UTF-8.</summary>
    public string Stderr => Encoding.UTF8.GetString(StderrBytes.Span);

    /// <summary>Everything the command wrote to stdout, as bytes.</summary>
    public ReadOnlyMemory<byte> StdoutBytes { get; internal init; }

    /// <summary>Everything the command wrote to stderr, as bytes.</summary>
    public ReadOnlyMemory<byte> StderrBytes { get; internal init; }
}
