using System.Diagnostics;
using Vessel.Common;
using Vessel.Containerd;
using Vessel.Guest;
using Vessel.IntegrationTests.Containerd;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Shim;

/// <summary>
/// A private containerd (root, state, sockets in a temp directory, CRI off) whose PATH starts
/// with this test's output directory, where the build put <c>containerd-shim-vessel-v1</c> and
/// the guest agent; the busybox test image imported from its OCI layout. Shims and their VMs
/// inherit containerd's environment: VESSEL_HOME is a private home (its kits/ links the shared
/// kit cache, built here first) and a marker variable finds every process they leave.
/// </summary>
public sealed class ShimFixture : IAsyncLifetime
{
    public static readonly string[] Requirements = ["root", "containerd", "ctr", "qemu-system-x86_64", "busybox-image", "apt-get", "dpkg-deb", "modinfo", "setsid", "tar"];

    public const string Namespace = "vessel-shim";

    public const string Image = "docker.io/library/vessel-busybox:" + TestImages.BusyboxOciTag;

    public const string Runtime = "io.containerd.vessel.v1";

    private const string MarkerVariable = "SHIM_TEST_MARKER";

    private readonly string _marker = Guid.NewGuid().ToString("N");
    private TempDirectory? _dir;
    private Process? _daemon;
    private int _daemonPid;

    public string Root => _dir!.Path;

    public string Socket => Path.Combine(Root, "c.sock");

    public string Home => Path.Combine(Root, "home");

    public GuestKit? Kit { get; private set; }

    public async Task InitializeAsync()
    {
        if (global::Vessel.Testing.Requirements.FirstMissing(Requirements) is not null)
        {
            return;
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        Kit = await new KitBuilder(new KitOptions()).EnsureAsync(cts.Token);
        _dir = TempDirectory.Create("vshim-", "/tmp");
        Directory.CreateDirectory(Home);
        File.CreateSymbolicLink(Path.Combine(Home, "kits"), KitOptions.DefaultCacheDirectory);
        var environment = new Dictionary<string, string>
        {
            ["PATH"] = AppContext.BaseDirectory.TrimEnd('/') + ":" + Environment.GetEnvironmentVariable("PATH"),
            [VesselSettings.HomeVariable] = Home,
            [MarkerVariable] = _marker,
        };
        _daemon = await ContainerdFixture.StartDaemonAsync(Root, Socket, environment, cts.Token);
        _daemonPid = _daemon.Id;
        string archive = Path.Combine(Root, "busybox-oci.tar");
        (await ExternalProcess.RunAsync("tar", ["-C", TestImages.BusyboxOciLayout, "-cf", archive, "."], cts.Token)).EnsureSuccess();
        (await CtrAsync(cts.Token, "images", "import", "--base-name", Image.Split(':')[0], archive)).EnsureSuccess();
        File.Delete(archive);
    }

    public async Task DisposeAsync()
    {
        if (_daemon is not null)
        {
            await ContainerdFixture.StopDaemonAsync(_daemon);
            foreach (int pid in MarkedProcesses())
            {
                // A failed test may leave a shim or VMM: never leak it past the fixture.
                try
                {
                    using Process p = Process.GetProcessById(pid);
                    p.Kill(entireProcessTree: true);
                }
                catch (ArgumentException)
                {
                }
            }
        }
        if (_dir is not null)
        {
            ContainerdFixture.RemoveDirectory(_dir);
        }
    }

    public Task<ProcessResult> CtrAsync(CancellationToken cancellationToken, params string[] args)
        => CtrWithInputAsync(null, cancellationToken, args);

    public Task<ProcessResult> CtrWithInputAsync(string? stdin, CancellationToken cancellationToken, params string[] args)
        => ExternalProcess.RunAsync("ctr", ["-a", Socket, "-n", Namespace, .. args], cancellationToken, standardInput: stdin ?? string.Empty, timeout: TimeSpan.FromMinutes(5));

    /// <summary>Processes that inherited containerd's marker (shims, their VMMs), containerd itself excepted.</summary>
    public IReadOnlyList<int> MarkedProcesses() => ProcessTable.WithEnvironment(MarkerVariable, _marker).Where(pid => pid != _daemonPid).ToList();

    /// <summary>The long-lived shim of container <paramref name="id"/>, by its command line.</summary>
    public int? ShimPid(string id) => MarkedProcesses().Cast<int?>().FirstOrDefault(pid =>
    {
        try
        {
            string[] args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0');
            return args.Any(a => a.EndsWith("containerd-shim-vessel-v1", StringComparison.Ordinal)) && args.Contains(id) && args.Contains("serve");
        }
        catch (IOException)
        {
            return false;
        }
    });

    /// <summary>
    /// Asserts that nothing of the shim is left: no process (shim, VMM) with containerd's marker,
    /// no mount under containerd's state, no sandbox directory in the shim's home, no shim socket.
    /// </summary>
    public async Task AssertNothingLeftAsync(string id, CancellationToken cancellationToken)
    {
        // The shim exits just after it answered Shutdown: give it a moment.
        for (int i = 0; i < 100 && MarkedProcesses().Count > 0; i++)
        {
            await Task.Delay(100, cancellationToken);
        }
        Assert.Empty(MarkedProcesses());
        Assert.Empty(LinuxMount.MountsUnder(Path.Combine(Root, "state")));
        string sandboxes = new VesselHome(Home).Sandboxes;
        Assert.Empty(Directory.Exists(sandboxes) ? Directory.EnumerateFileSystemEntries(sandboxes) : []);
        Assert.False(File.Exists(global::Vessel.Shim.ShimCommand.SocketPath(Socket, Namespace, id)), "the shim's socket is left");
        string containers = (await CtrAsync(cancellationToken, "containers", "ls", "-q")).EnsureSuccess().StandardOutput;
        Assert.DoesNotContain(id, containers.Split('\n'));
    }
}

[CollectionDefinition(Name)]
public sealed class ShimCollection : ICollectionFixture<ShimFixture>
{
    public const string Name = "shim";
}
