using Vessel.Common;

namespace Vessel.Templates;

/// <summary>
/// The template spec in code:
/// <c>Template.From("alpine:3.20").DiskSize("2G").ReservedMb(256).Run("apk add curl").Copy("src", "/app").Start("...").Ready("...")</c>.
/// Each call returns a new value (the builder is immutable); <see cref="ToSpec"/> validates
/// with the same rules as the file format.
/// </summary>
public sealed record Template
{
    private TemplateSpec Spec { get; init; } = new() { Name = string.Empty };

    /// <summary>Starts from an image reference (registry, oci:, docker-archive:, tarball: ...).</summary>
    public static Template From(string imageReference) => new() { Spec = new TemplateSpec { Name = string.Empty, FromImage = imageReference } };

    /// <summary>Starts from a template built before, by name.</summary>
    public static Template FromTemplate(string parentName) => new() { Spec = new TemplateSpec { Name = string.Empty, FromTemplate = parentName } };

    public Template Named(string name) => this with { Spec = Spec with { Name = name } };

    /// <summary>A size such as "2G", "512M" or a byte count.</summary>
    public Template DiskSize(string size) => DiskSizeBytes(ByteSize.TryParse(size, out long bytes) ? bytes
        : throw new ArgumentException($"'{size}' is not a size (use e.g. 2G, 512M or a byte count).", nameof(size)));

    public Template DiskSizeBytes(long bytes) => this with { Spec = Spec with { DiskSizeBytes = bytes } };

    public Template ReservedMb(int megabytes) => this with { Spec = Spec with { ReservedMb = megabytes } };

    public Template Cpu(int count) => this with { Spec = Spec with { Cpu = count } };

    public Template MemoryMb(int megabytes) => this with { Spec = Spec with { MemoryMb = megabytes } };

    public Template Run(string command) => Add(StepKind.Run, command);

    public Template Copy(string source, string destination) => Add(StepKind.Copy, source, destination);

    public Template Env(string key, string value) => Add(StepKind.Env, key, value);

    public Template Workdir(string path) => Add(StepKind.Workdir, path);

    public Template User(string user) => Add(StepKind.User, user);

    /// <summary>The build VM's network (the spec's <c>network</c>): what RUN steps, start and ready may reach.</summary>
    public Template Network(Vmm.NetworkConfig network) => this with { Spec = Spec with { Network = network } };

    public Template Start(string command) => this with { Spec = Spec with { Start = command } };

    public Template Ready(string command) => this with { Spec = Spec with { Ready = command } };

    /// <summary>Where COPY sources are read from.</summary>
    public Template Context(string directory) => this with { Spec = Spec with { ContextDirectory = Path.GetFullPath(directory) } };

    /// <summary>The validated spec; throws <see cref="TemplateSpecException"/> listing every problem.</summary>
    public TemplateSpec ToSpec()
    {
        TemplateSpecValidator.ThrowIfInvalid(Spec);
        return Spec;
    }

    private Template Add(StepKind kind, params string[] arguments)
        => this with { Spec = Spec with { Steps = [.. Spec.Steps, new TemplateStep(kind, arguments)] } };
}
