using Vessel.Common;
using Vessel.Oci;

namespace Vessel.Sandboxes;

public sealed partial class SandboxManager
{
    /// <summary>
    /// A pod: one VM whose containers each run on an overlay root (the image's read-only ext4, or
    /// its unpacked tree over virtio-fs, as lower, a guest tmpfs of <see cref="PodSpec.UpperMiB"/> as
    /// upper) in their own namespaces. Each image is built once into the home's <c>images/</c>
    /// (<see cref="PodLower"/>) and attached read-only, or (virtio-fs) unpacked once from there
    /// into <c>images/trees/</c> (<see cref="PodTree"/>) and served by the sandbox's own
    /// virtiofsd; the containers start in order once the agent answers. A failure removes everything.
    /// </summary>
    /// <param name="openImage">Opens an image reference as the user wrote it.</param>
    public async Task<Sandbox> CreatePodAsync(PodSpec spec, SandboxOptions options, Func<string, CancellationToken, Task<IImageSource>> openImage, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(openImage);
        spec.Validate();
        var cache = PodLower.Cache(new VesselHome(StateDirectory).Images);
        var byImage = new Dictionary<string, PodLower>(StringComparer.Ordinal);
        foreach (PodContainerSpec c in spec.Containers)
        {
            if (!byImage.ContainsKey(c.Image))
            {
                await using IImageSource source = await openImage(c.Image, cancellationToken);
                byImage[c.Image] = await PodLower.EnsureAsync(cache, source, cancellationToken);
            }
        }
        List<PodLower> lowers = byImage.Values.DistinctBy(l => l.Id).ToList();
        List<PodTree>? trees = null;
        if (spec.Rootfs == PodRootfsMode.Virtiofs)
        {
            trees = [];
            foreach (PodLower lower in lowers)
            {
                trees.Add(await PodTree.EnsureAsync(new VesselHome(StateDirectory), lower, cancellationToken));
            }
        }
        Sandbox sandbox = await CreateAsync(options with
        {
            RootfsPath = null,
            PodLowers = lowers,
            PodTrees = trees,
            Pausable = options.Pausable && trees is null,
            MemoryMiB = spec.MemoryMiB,
            Vcpus = spec.Vcpus,
        }, cancellationToken);
        try
        {
            var containers = new List<PodContainer>();
            foreach (PodContainerSpec c in spec.Containers)
            {
                PodLower lower = byImage[c.Image];
                Agent.ExecRequest process = ContainerProcess(c, lower.Config);
                int pid = await StartContainerAsync(sandbox, c, lower, (uint)spec.UpperMiB, process, cancellationToken);
                containers.Add(new PodContainer(c.Name, c.Image, lower.ContentDigest, lower.Id, pid));
            }
            sandbox.Pod = new PodInfo(spec, containers) { Lowers = lowers };
            return sandbox;
        }
        catch
        {
            await sandbox.KillAsync();
            throw;
        }
    }

    /// <summary>How long one container may take to start in the guest (mount its overlay root, exec its process).</summary>
    internal static readonly TimeSpan ContainerStartTimeout = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Starts one container, bounded by <see cref="ContainerStartTimeout"/>: a guest that never
    /// answers (a mount stuck on its lower) fails the create naming the container and the
    /// console's tail instead of holding the request open.
    /// </summary>
    private static async Task<int> StartContainerAsync(Sandbox sandbox, PodContainerSpec container, PodLower lower, uint upperMiB, Agent.ExecRequest process, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(ContainerStartTimeout);
        try
        {
            return await sandbox.Agent.StartContainerAsync(container.Name, lower.Id, upperMiB, process, deadline.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new VesselException(VesselErrorReason.Unavailable,
                $"Container '{container.Name}' of sandbox {sandbox.Id} did not start within {ContainerStartTimeout.TotalSeconds:0} s: the guest agent did not answer (its overlay root over the image's lower may be stuck). Console:\n{sandbox.VirtualMachine.ConsoleTail()}");
        }
    }

    /// <summary>
    /// A paused pod on a new VM: the same image disks (the cache files, byte-identical by digest:
    /// refused when one was pruned), RAM and device state from the snapshot, so every container's
    /// processes and upper writes (guest tmpfs) are back.
    /// </summary>
    private async Task<Sandbox> ResumePodAsync(PausedSandbox paused, PodInfo pod, SandboxOptions options, CancellationToken cancellationToken)
    {
        foreach (PodLower lower in pod.Lowers)
        {
            if (!File.Exists(lower.Path))
            {
                throw new VesselException(VesselErrorReason.NotFound,
                    $"The image disk of {lower.ContentDigest} ({lower.Path}) that this paused pod needs is gone from the image cache: the pod cannot resume.");
            }
        }
        Sandbox sandbox = await CreateAsync(options with
        {
            RootfsPath = null,
            Device = null,
            Layer = null,
            PodLowers = pod.Lowers,
            RestoreFrom = paused.Directory,
            Pausable = true,
        }, cancellationToken);
        sandbox.Pod = pod;
        return sandbox;
    }

    /// <summary>The container's first process: the request's command, env, cwd and user over the image config's.</summary>
    internal static Agent.ExecRequest ContainerProcess(PodContainerSpec c, ImageConfig config)
    {
        IReadOnlyList<string> command = c.Command ?? [.. config.Entrypoint ?? [], .. config.Cmd ?? []];
        if (command.Count == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"container {c.Name}: image {c.Image} has no entrypoint or cmd; give a command.");
        }
        var env = new List<string>();
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string kv in config.Env)
        {
            int eq = kv.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                names[kv[..eq]] = env.Count;
                env.Add(kv);
            }
        }
        foreach ((string k, string v) in c.Env ?? new Dictionary<string, string>())
        {
            if (names.TryGetValue(k, out int at))
            {
                env[at] = $"{k}={v}";
            }
            else
            {
                env.Add($"{k}={v}");
            }
        }
        return new Agent.ExecRequest(command)
        {
            Environment = env,
            WorkingDirectory = c.Cwd ?? (string.IsNullOrEmpty(config.WorkingDir) ? "/" : config.WorkingDir),
            User = c.User ?? config.User,
        };
    }
}

/// <summary>A pod's container as the host knows it: which image and lower, and the pid of its first process in the guest.</summary>
public sealed record PodContainer(string Name, string Image, string ContentDigest, string LowerId, int Pid);

/// <summary>What a pod sandbox was made of.</summary>
public sealed record PodInfo(PodSpec Spec, IReadOnlyList<PodContainer> Containers)
{
    /// <summary>The image disks, in the VM's device order (a resume attaches the same set).</summary>
    internal IReadOnlyList<PodLower> Lowers { get; init; } = [];
}
