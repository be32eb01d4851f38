namespace Vessel.Client;

/// <summary>A template the daemon can create sandboxes from (<see cref="TemplatesClient.ListAsync"/>).</summary>
public sealed record TemplateInfo
{
    /// <summary>Its name, for <see cref="SandboxCreateOptions.Template"/>.</summary>
    public required string Name { get; init; }

    /// <summary>The image it was built from, as the spec names it.</summary>
    public string? Image { get; init; }

    /// <summary>Whether it has a snapshot (sandboxes resume from it) or cold-boot.</summary>
    public bool? HasSnapshot { get; init; }

    /// <summary>When it was built.</summary>
    public DateTimeOffset? CreatedAt { get; init; }
}
