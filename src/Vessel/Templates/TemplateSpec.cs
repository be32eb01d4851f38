namespace Vessel.Templates;

/// <summary>The kinds of build step (docs/formats/template-spec.md, "steps").</summary>
public enum StepKind
{
    Run,
    Copy,
    Env,
    Workdir,
    User,
}

/// <summary>
/// One build step. <see cref="Arguments"/> holds the step's arguments in a fixed order that
/// enters the phase hash: RUN [command]; COPY [source, destination]; ENV [key, value, key,
/// value...]; WORKDIR [path]; USER [user].
/// </summary>
public sealed record TemplateStep(StepKind Kind, IReadOnlyList<string> Arguments)
{
    /// <summary>The line of the spec file it came from (0 for steps built in code).</summary>
    public int Line { get; init; }

    /// <summary>A placeholder for a step the reader already reported as malformed; validation skips it.</summary>
    internal bool Malformed { get; init; }

    public override string ToString() => Kind switch
    {
        StepKind.Run => $"RUN {Arguments[0]}",
        StepKind.Copy => $"COPY {Arguments[0]} {Arguments[1]}",
        StepKind.Env => "ENV " + string.Join(' ', Enumerable.Range(0, Arguments.Count / 2).Select(i => $"{Arguments[2 * i]}={Arguments[(2 * i) + 1]}")),
        StepKind.Workdir => $"WORKDIR {Arguments[0]}",
        _ => $"USER {Arguments[0]}",
    };

    public bool Equals(TemplateStep? other) => other is not null && Kind == other.Kind && Arguments.SequenceEqual(other.Arguments);

    public override int GetHashCode() => HashCode.Combine(Kind, Arguments.Count);
}

/// <summary>
/// What a template is made of: a base (an image reference or a parent template), the disk,
/// the VM shape, the steps, and the start command with its ready check. Built by
/// <see cref="TemplateSpecReader"/> from a file or by <see cref="Template"/> in code; both
/// validate with <see cref="TemplateSpecValidator"/>.
/// </summary>
public sealed record TemplateSpec
{
    public const int DefaultCpu = 1;
    public const int DefaultMemoryMb = Vmm.VmConfig.DefaultMemoryMiB; // one default for every command

    public required string Name { get; init; }

    /// <summary>An image reference (see docs/formats/image-sources.md); null when <see cref="FromTemplate"/> is set.</summary>
    public string? FromImage { get; init; }

    /// <summary>The name of a parent template; null when <see cref="FromImage"/> is set.</summary>
    public string? FromTemplate { get; init; }

    /// <summary>Disk size in bytes; null: from an image, the content plus 512 MiB; from a template, the parent's size.</summary>
    public long? DiskSizeBytes { get; init; }

    /// <summary>ext4 reserved blocks for root, in MiB, set with the host's tune2fs (seed 000).</summary>
    public int ReservedMb { get; init; }

    public int Cpu { get; init; } = DefaultCpu;

    public int MemoryMb { get; init; } = DefaultMemoryMb;

    public IReadOnlyList<TemplateStep> Steps { get; init; } = [];

    /// <summary>The command finalize starts (through /bin/sh -c); null: nothing runs, the snapshot is of an idle VM.</summary>
    public string? Start { get; init; }

    /// <summary>A command finalize runs until it exits 0; null: ready as soon as the start command is running.</summary>
    public string? Ready { get; init; }

    /// <summary>Where <c>COPY</c> sources are read from (the spec file's directory by default).</summary>
    public string? ContextDirectory { get; init; }

    /// <summary>The build VMs' network (null: outbound on, no rules); not part of any phase hash.</summary>
    public Vmm.NetworkConfig? Network { get; init; }

    /// <summary>The file the spec came from, for messages.</summary>
    public string? SourcePath { get; init; }

    /// <summary>The line each top-level field was on in <see cref="SourcePath"/>, for validation messages.</summary>
    public IReadOnlyDictionary<string, int> Lines { get; init; } = new Dictionary<string, int>();
}
