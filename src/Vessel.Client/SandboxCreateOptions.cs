namespace Vessel.Client;

/// <summary>What <see cref="SandboxesClient.CreateAsync"/> creates.</summary>
public sealed class SandboxCreateOptions
{
    /// <summary>The template's name (<c>GET /templates</c>). Required.</summary>
    public required string Template { get; init; }

    /// <summary>How long the sandbox lives before the daemon kills it (default 5 minutes, at most 24 hours).</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Pause instead of kill when the timeout passes.</summary>
    public bool AutoPause { get; init; }

    /// <summary>Labels to find the sandbox by (<see cref="SandboxQuery.Metadata"/>).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Environment variables for every command in the sandbox.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }

    /// <summary>The sandbox's network (null: the daemon's default, outbound on).</summary>
    public SandboxNetwork? Network { get; init; }
}
