using System.Diagnostics;
using Vessel.Agent.Protocol;
using Vessel.Oci;
using Vessel.Sandboxes;
using Vessel.Templates;

namespace Vessel.Service;

internal sealed partial class SandboxService
{
    /// <summary>What a pod's <see cref="SandboxInfo.Template"/> says: it was made from containers, not a template.</summary>
    public const string PodTemplate = "";

    /// <summary>Creates a pod (docs/api.md, "Pods"): the request's containers in one VM, each on an overlay root.</summary>
    public async Task<SandboxInfo> CreatePodAsync(CreateSandboxRequest request, CancellationToken cancellationToken)
    {
        if (!string.IsNullOrEmpty(request.Template))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "template and containers: give one of them (a sandbox from a template, or a pod of containers).");
        }
        int timeout = CheckCreate(request);
        PodSpec spec = ToSpec(request);
        spec.Validate();
        if (spec.Rootfs == PodRootfsMode.Virtiofs && request.AutoPause == true)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "autoPause: a virtio-fs pod cannot pause (QEMU 7.2's vhost-user-fs device is unmigratable); use \"rootfs\": \"block\" or leave autoPause out.");
        }
        // One network for the pod: its containers share the VM's network namespace (lo, eth0), as they do in a Kubernetes pod.
        Vmm.NetworkConfig network = ToNetwork(request.Network);
        var clock = Stopwatch.StartNew();
        Sandbox live = await _manager.CreatePodAsync(spec, new SandboxOptions { Pausable = true, Acceleration = _options.Acceleration, Network = network }, OpenImageAsync, cancellationToken);
        ServiceSandbox sandbox = NewSandbox(request, PodTemplate, new TemplateConfig(), timeout, live, network);
        await AddAsync(sandbox, "(pod)", clock, cancellationToken);
        return await InfoAsync(sandbox, cancellationToken);
    }

    /// <summary>A sandbox's info; a running pod's containers are asked of the guest (state and exit code).</summary>
    public async Task<SandboxInfo> GetAsync(string id, CancellationToken cancellationToken) => await InfoAsync(Find(id), cancellationToken);

    private static async Task<SandboxInfo> InfoAsync(ServiceSandbox sandbox, CancellationToken cancellationToken)
    {
        SandboxInfo info = sandbox.ToInfo();
        if (sandbox.Pod is not { } pod)
        {
            return info;
        }
        IReadOnlyList<ContainerStatus> states = [];
        if (sandbox.Live is { } live)
        {
            try
            {
                states = await live.Agent.ListContainersAsync(cancellationToken);
            }
            catch (VesselException)
            {
                // The guest is going away (a delete or pause in flight): the states read "unknown".
            }
        }
        return info with
        {
            Containers = pod.Containers.Select(c =>
            {
                ContainerStatus? s = states.FirstOrDefault(x => x.Name == c.Name);
                return new ContainerInfo(c.Name, c.Image, c.ContentDigest, s is null ? "unknown" : s.Running ? "running" : "exited", s is { Running: false } ? s.ExitCode : null);
            }).ToList(),
        };
    }

    /// <summary>The container a command or file operation names: required in a pod (and one of its own), refused elsewhere.</summary>
    private static string? ContainerOf(ServiceSandbox sandbox, string? container)
    {
        if (sandbox.Pod is not { } pod)
        {
            return string.IsNullOrEmpty(container)
                ? null
                : throw new VesselException(VesselErrorReason.InvalidInput, $"container: sandbox {sandbox.Id} is not a pod; leave container out.");
        }
        string names = string.Join(", ", pod.Containers.Select(c => c.Name));
        if (string.IsNullOrEmpty(container))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"container: sandbox {sandbox.Id} is a pod; name one of its containers ({names}).");
        }
        return pod.Containers.Any(c => c.Name == container)
            ? container
            : throw new VesselException(VesselErrorReason.NotFound, $"container: sandbox {sandbox.Id} has no container '{container}' (it has {names}).");
    }

    private static PodSpec ToSpec(CreateSandboxRequest request)
    {
        var containers = new List<PodContainerSpec>();
        for (int i = 0; i < request.Containers!.Count; i++)
        {
            PodContainerRequest c = request.Containers[i] ?? throw new VesselException(VesselErrorReason.InvalidInput, $"containers[{i}]: null.");
            CheckNoNulls($"containers[{i}].env", c.Env);
            containers.Add(new PodContainerSpec(c.Name ?? string.Empty, c.Image ?? string.Empty)
            {
                Command = c.Command,
                Env = c.Env,
                Cwd = c.Cwd,
                User = c.User,
            });
        }
        PodRootfsMode mode = request.Rootfs switch
        {
            null or "block" => PodRootfsMode.Block,
            "virtiofs" => PodRootfsMode.Virtiofs,
            string other => throw new VesselException(VesselErrorReason.InvalidInput, $"rootfs: '{other}' is not block or virtiofs."),
        };
        return new PodSpec(containers)
        {
            Rootfs = mode,
            MemoryMiB = request.MemoryMb ?? Vmm.VmConfig.DefaultMemoryMiB,
            Vcpus = request.Cpu ?? 1,
            UpperMiB = request.UpperMb ?? PodSpec.DefaultUpperMiB,
        };
    }

    private static Task<IImageSource> OpenImageAsync(string reference, CancellationToken cancellationToken)
        => ImageSources.OpenAsync(reference, new ImageSourceOptions(), cancellationToken);
}
