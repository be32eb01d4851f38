using Vessel.Agent.Protocol;
using Vessel.Guest;

namespace Vessel.Sandboxes;

/// <summary>How a pod's container images reach the guest.</summary>
public enum PodRootfsMode
{
    /// <summary>A read-only ext4 per image digest, attached as a virtio-blk disk and shared by every sandbox.</summary>
    Block = 0,

    /// <summary>Unpacked trees (one per image digest) served read-only by a virtiofsd per VM. Such a pod cannot pause (QEMU 7.2's vhost-user-fs is unmigratable).</summary>
    Virtiofs,
}

/// <summary>One container of a pod. Null fields take the image config's value.</summary>
/// <param name="Command">Replaces the image's entrypoint and cmd together (like Kubernetes' command with no args).</param>
/// <param name="Env">Added to the image's environment, replacing a variable of the same name.</param>
public sealed record PodContainerSpec(string Name, string Image)
{
    public IReadOnlyList<string>? Command { get; init; }

    public IReadOnlyDictionary<string, string>? Env { get; init; }

    public string? Cwd { get; init; }

    public string? User { get; init; }
}

/// <summary>A sandbox made of containers: one VM, each container on an overlay root (read-only image lower, guest tmpfs upper).</summary>
public sealed record PodSpec(IReadOnlyList<PodContainerSpec> Containers)
{
    public const int DefaultUpperMiB = 64;

    public PodRootfsMode Rootfs { get; init; } = PodRootfsMode.Block;

    public int MemoryMiB { get; init; } = Vmm.VmConfig.DefaultMemoryMiB;

    public int Vcpus { get; init; } = 1;

    /// <summary>The cap of each container's tmpfs upper (its rootfs writes and its log), in MiB of guest memory.</summary>
    public int UpperMiB { get; init; } = DefaultUpperMiB;

    /// <summary>Refuses a spec that cannot run, naming the field: names (DNS labels, unique, no '_ovl'), counts, sizes.</summary>
    public void Validate()
    {
        if (Containers is null || Containers.Count == 0)
        {
            throw Invalid("containers: a pod needs at least one container.");
        }
        if (Containers.Count > ContainerNames.MaxContainers)
        {
            throw Invalid($"containers: at most {ContainerNames.MaxContainers} containers in one sandbox, got {Containers.Count}.");
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < Containers.Count; i++)
        {
            PodContainerSpec c = Containers[i] ?? throw Invalid($"containers[{i}]: null.");
            if (ContainerNames.Problem(c.Name) is { } problem)
            {
                throw Invalid($"containers[{i}].name: {problem}.");
            }
            if (!seen.Add(c.Name))
            {
                throw Invalid($"containers[{i}].name: '{c.Name}' is used twice.");
            }
            if (string.IsNullOrWhiteSpace(c.Image))
            {
                throw Invalid($"containers[{i}].image: an image reference is required (e.g. oci:./layout:latest or docker://...).");
            }
            if (c.Command is { Count: 0 } || c.Command?.Any(a => a is null || a.Contains('\0', StringComparison.Ordinal)) == true)
            {
                throw Invalid($"containers[{i}].command: give at least one argument, none null or with a NUL character (or leave it out for the image's).");
            }
            if (c.Env?.Any(p => p.Key.Length == 0 || p.Key.Contains('=', StringComparison.Ordinal) || p.Value is null) == true)
            {
                throw Invalid($"containers[{i}].env: every entry needs a name without '=' and a value.");
            }
        }
        GuestKit.CheckMemory(MemoryMiB);
        if (Vcpus is < 1 or > 16)
        {
            throw Invalid($"cpu: {Vcpus} is outside 1 to 16.");
        }
        if (UpperMiB < 1 || UpperMiB > MemoryMiB)
        {
            throw Invalid($"upperMb: {UpperMiB} is outside 1 to the sandbox's memory ({MemoryMiB} MiB): the uppers are guest tmpfs.");
        }
    }

    private static VesselException Invalid(string message) => new(VesselErrorReason.InvalidInput, message);
}
