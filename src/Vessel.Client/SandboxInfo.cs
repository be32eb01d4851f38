namespace Vessel.Client;

/// <summary>What the daemon says about a sandbox (<c>GET /sandboxes/{id}</c>).</summary>
public sealed record SandboxInfo
{
    /// <summary>The sandbox's id.</summary>
    public required string SandboxId { get; init; }

    /// <summary>The template it was created from.</summary>
    public string? Template { get; init; }

    /// <summary>Running or paused.</summary>
    public SandboxState State { get; init; }

    /// <summary>When it was created.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>When its timeout ends it (kill, or pause with auto-pause).</summary>
    public DateTimeOffset? EndAt { get; init; }

    /// <summary>The metadata it was created with.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();
}
