namespace Vessel.Client;

/// <summary>A process the daemon started in a sandbox and that still runs (<see cref="CommandsClient.ListAsync"/>).</summary>
public sealed record ProcessInfo
{
    /// <summary>Its process id in the guest.</summary>
    public int Pid { get; init; }

    /// <summary>The command.</summary>
    public string? Cmd { get; init; }

    /// <summary>Its arguments.</summary>
    public IReadOnlyList<string> Args { get; init; } = [];

    /// <summary>Whether it was started in the background.</summary>
    public bool Background { get; init; }

    /// <summary>When it started.</summary>
    public DateTimeOffset? StartedAt { get; init; }
}
