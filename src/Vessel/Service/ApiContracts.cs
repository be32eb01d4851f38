namespace Vessel.Service;

// The JSON shapes of docs/api.md (camelCase on the wire). Requests take nullable fields so a
// missing one is reported by name (400) instead of failing deserialization.

internal sealed record CreateSandboxRequest(string? Template, int? TimeoutSeconds, Dictionary<string, string>? Metadata, Dictionary<string, string>? Env, bool? AutoPause)
{
    /// <summary>A pod instead of a template (docs/api.md, "Pods"): its containers.</summary>
    public List<PodContainerRequest>? Containers { get; init; }

    /// <summary>"block" (default) or "virtiofs".</summary>
    public string? Rootfs { get; init; }

    public int? MemoryMb { get; init; }

    public int? Cpu { get; init; }

    public int? UpperMb { get; init; }

    /// <summary>The sandbox's network (null: the daemon's default).</summary>
    public NetworkRequest? Network { get; init; }
}

internal sealed record NetworkRequest(string? Outbound, List<string>? Allow, List<string>? Deny);

internal sealed record PortInfo(int Port, string Host, string Url);

internal sealed record PodContainerRequest(string? Name, string? Image, List<string>? Command, Dictionary<string, string>? Env, string? Cwd, string? User);

internal sealed record SandboxInfo(string SandboxId, string Template, string State, DateTime StartedAt, DateTime EndAt, IReadOnlyDictionary<string, string> Metadata)
{
    /// <summary>A pod's containers (null for a sandbox from a template).</summary>
    public IReadOnlyList<ContainerInfo>? Containers { get; init; }

    /// <summary>On a cluster, the node that owns it (runs its VM or holds its snapshot); null on a single daemon.</summary>
    public string? Node { get; init; }
}

/// <summary>One container of a pod: "running", "exited" (with its exit code) or "unknown" while the sandbox is paused.</summary>
internal sealed record ContainerInfo(string Name, string Image, string ImageDigest, string State, int? ExitCode);

internal sealed record TimeoutRequest(int? TimeoutSeconds);

/// <summary>A resume: a new timeout, and on a cluster the node to resume on (null: placement picks, docs/cluster.md).</summary>
internal sealed record ResumeRequest(int? TimeoutSeconds, string? Node);

internal sealed record CommandRequest(string? Cmd, List<string>? Args, Dictionary<string, string>? Env, string? Cwd, string? User, string? Stdin, bool? Background, int? TimeoutSeconds)
{
    /// <summary>The pod container to run in (required for a pod, refused otherwise).</summary>
    public string? Container { get; init; }
}

internal sealed record CommandInfo(int Pid, string Cmd, IReadOnlyList<string> Args, bool Background, DateTime StartedAt);

internal sealed record SignalRequest(int? Signal);

internal sealed record MoveRequest(string? From, string? To);

internal sealed record FileEntryInfo(string Name, string Path, string Type, long Size, int Mode, string Owner, DateTime Mtime, string? LinkTarget);

internal sealed record TemplateInfo(string Name, DateTime BuiltAt, long DiskSizeBytes, bool HasSnapshot, int Cpu, int MemoryMb, string FinalHash);

internal sealed record BuildStarted(string BuildId);

internal sealed record BuildInfo(string BuildId, string Template, string Status, DateTime StartedAt, DateTime? FinishedAt, string? Error);
