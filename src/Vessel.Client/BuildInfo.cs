namespace Vessel.Client;

/// <summary>A template build in the daemon (<see cref="TemplatesClient.GetBuildAsync"/>).</summary>
public sealed record BuildInfo
{
    /// <summary>The build's id.</summary>
    public required string BuildId { get; init; }

    /// <summary>The template it builds.</summary>
    public string? Template { get; init; }

    /// <summary>Building, succeeded or failed.</summary>
    public BuildStatus Status { get; init; }

    /// <summary>Why it failed, when it failed.</summary>
    public string? Error { get; init; }

    /// <summary>When it started.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>When it ended.</summary>
    public DateTimeOffset? FinishedAt { get; init; }
}
