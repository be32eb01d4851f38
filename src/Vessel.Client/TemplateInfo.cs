namespace Vessel.Client;

/// <summary>A template the daemon can create sandboxes from (<see cref="TemplatesClient.ListAsync"/>).</summary>
public sealed record TemplateInfo
{
    /// <summary>Its name, for <see cref="SandboxCreateOptions.Template"/>.</summary>
    public required string Name { get; init; }

    /// <summary>When it was built.</summary>
    public DateTimeOffset? BuiltAt { get; init; }

    /// <summary>The size of its disk in bytes.</summary>
    public long? DiskSizeBytes { get; init; }

    /// <summary>Whether it has a snapshot (sandboxes resume from it) or boots cold.</summary>
    public bool HasSnapshot { get; init; }

    /// <summary>Its virtual CPUs.</summary>
    public int? Cpu { get; init; }

    /// <summary>Its guest memory in MiB.</summary>
    public int? MemoryMb { get; init; }

    /// <summary>The cache key of its last build phase (same inputs, same hash).</summary>
    public string? FinalHash { get; init; }
}
