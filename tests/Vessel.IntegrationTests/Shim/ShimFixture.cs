using Vessel.IntegrationTests.Containerd;

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

    /// <summary>The timeout of each test of the collection (its attribute\'s, and its cancellation\'s).</summary>
    public const int TestTimeout = 600_000;

    public const string Namespace = "vessel-shim";

    public const string Image = "docker.io/library/vessel-busybox:" + TestImages.BusyboxOciTag;

    /// <summary>The busybox image plus the kit's kernel, an initrd and a boot config, named by urunc's and Vessel's labels (seed 002).</summary>
    public const string BootImage = "docker.io/library/vessel-boot:" + TestImages.BusyboxOciTag;

    /// <summary>The boot config inside <see cref="BootImage"/>: kernel parameters the guest must see.</summary>
    public const string BootParameter = "vessel_boot_test=42";

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

    /// <summary>The shim's config (VESSEL_SHIM_CONFIG in containerd's environment): boot artifacts on, snapshot views.</summary>
    public string ShimConfigPath => Path.Combine(Root, "shim.toml");

    /// <summary>The initrd inside <see cref="BootImage"/> (one cpio file).</summary>
    public byte[] BootInitrd { get; private set; } = [];

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
            ["VESSEL_SHIM_CONFIG"] = ShimConfigPath,
        };
        await File.WriteAllTextAsync(ShimConfigPath, "[boot_artifacts]\nenabled = true\nmode = \"view\"\n", cts.Token);
        _daemon = await ContainerdFixture.StartDaemonAsync(Root, Socket, environment, cts.Token);
        _daemonPid = _daemon.Id;
        string archive = Path.Combine(Root, "busybox-oci.tar");
        (await ExternalProcess.RunAsync("tar", ["-C", TestImages.BusyboxOciLayout, "-cf", archive, "."], cts.Token)).EnsureSuccess();
        (await CtrAsync(cts.Token, "images", "import", "--base-name", Image.Split(':')[0], archive)).EnsureSuccess();
        File.Delete(archive);
        await ImportBootImageAsync(cts.Token);
    }

    /// <summary>Builds <see cref="BootImage"/> from the busybox layout with umoci (kernel, initrd, config and labels) and imports it.</summary>
    private async Task ImportBootImageAsync(CancellationToken cancellationToken)
    {
        string layout = Path.Combine(Root, "boot-oci");
        string unpacked = Path.Combine(Root, "boot-unpack");
        string reference = layout + ":" + TestImages.BusyboxOciTag;
        (await ExternalProcess.RunAsync("cp", ["-a", TestImages.BusyboxOciLayout, layout], cancellationToken)).EnsureSuccess();
        (await ExternalProcess.RunAsync("umoci", ["unpack", "--image", reference, unpacked], cancellationToken)).EnsureSuccess();
        string rootfs = Path.Combine(unpacked, "rootfs");
        Directory.CreateDirectory(Path.Combine(rootfs, "boot"));
        File.Copy(Kit!.KernelPath, Path.Combine(rootfs, "boot", "vmlinuz"));
        using (var initrd = new MemoryStream())
        {
            using (var cpio = new CpioWriter(initrd))
            {
                cpio.AddFile("vessel-image-initrd", "from the image\n"u8.ToArray());
                cpio.Finish();
            }
            BootInitrd = initrd.ToArray();
        }
        await File.WriteAllBytesAsync(Path.Combine(rootfs, "boot", "initrd.img"), BootInitrd, cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "vessel-boot.conf"), BootParameter + "\n", cancellationToken);
        (await ExternalProcess.RunAsync("umoci", ["repack", "--image", reference, unpacked], cancellationToken)).EnsureSuccess();
        (await ExternalProcess.RunAsync("umoci", ["config", "--image", reference,
            "--config.label", "com.urunc.unikernel.binary=/boot/vmlinuz",
            "--config.label", "com.urunc.unikernel.initrd=/boot/initrd.img",
            "--config.label", "dev.vessel.boot.config=/etc/vessel-boot.conf"], cancellationToken)).EnsureSuccess();
        Directory.Delete(unpacked, recursive: true);
        string archive = Path.Combine(Root, "boot-oci.tar");
        (await ExternalProcess.RunAsync("tar", ["-C", layout, "-cf", archive, "."], cancellationToken)).EnsureSuccess();
        (await CtrAsync(cancellationToken, "images", "import", "--base-name", BootImage.Split(':')[0], archive)).EnsureSuccess();
        File.Delete(archive);
        Directory.Delete(layout, recursive: true);
    }

    /// <summary>
    /// Runs a detached task (<c>ctr run -d --runtime vessel</c> then <paramref name="runArguments"/>:
    /// options, image, <paramref name="id"/>, command), runs <paramref name="body"/> on it, removes
    /// task and container whatever happened, and then asserts that nothing of it is left.
    /// </summary>
    public async Task WithDetachedTaskAsync(string id, string[] runArguments, Func<Task> body, CancellationToken cancellationToken)
    {
        (await CtrAsync(cancellationToken, ["run", "-d", "--runtime", Runtime, .. runArguments])).EnsureSuccess();
        try
        {
            await body();
        }
        finally
        {
            await RemoveAsync(id);
        }
        await AssertNothingLeftAsync(id, cancellationToken);
    }

    /// <summary>
    /// <c>ctr run --rm --runtime vessel</c> then <paramref name="runArguments"/> (options, image,
    /// <paramref name="id"/>, command): the run's result, with the container removed even where
    /// the run failed before ctr could remove it.
    /// </summary>
    public async Task<ProcessResult> RunAndRemoveAsync(string id, string[] runArguments, CancellationToken cancellationToken)
    {
        try
        {
            return await CtrAsync(cancellationToken, ["run", "--rm", "--runtime", Runtime, .. runArguments]);
        }
        finally
        {
            await CtrAsync(CancellationToken.None, "containers", "rm", id);
        }
    }

    /// <summary>SIGKILLs the shim of task <paramref name="id"/> and waits (up to about 20 s) until containerd has called its <c>delete</c> and lists no task.</summary>
    public async Task KillShimAndWaitGoneAsync(string id, CancellationToken cancellationToken)
    {
        int shim = ShimPid(id) ?? throw new InvalidOperationException($"no shim process for {id}");
        using (Process p = Process.GetProcessById(shim))
        {
            p.Kill();
        }
        // containerd sees the socket close and runs `containerd-shim-vessel-v1 delete` in the bundle.
        for (int i = 0; i < 200 && (await CtrAsync(cancellationToken, "task", "ls", "-q")).StandardOutput.Contains(id, StringComparison.Ordinal); i++)
        {
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>Asserts that <paramref name="result"/> (ctr's, or script's around it) exited with <paramref name="code"/>; the message quotes the command and its output.</summary>
    public static void AssertExit(ProcessResult result, int code)
        => Assert.True(result.ExitCode == code, $"{result.FileName} {string.Join(' ', result.Arguments)} exited with {result.ExitCode}: {result.StandardOutput}{result.StandardError}");

    /// <summary>SIGKILLs task <paramref name="id"/> and waits (up to about 10 s) until ctr lists a stopped task.</summary>
    public async Task KillAndWaitStoppedAsync(string id, CancellationToken cancellationToken)
    {
        (await CtrAsync(cancellationToken, "task", "kill", "-s", "SIGKILL", id)).EnsureSuccess();
        for (int i = 0; i < 100 && !(await CtrAsync(cancellationToken, "task", "ls")).StandardOutput.Contains("STOPPED", StringComparison.Ordinal); i++)
        {
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>Removes task and container <paramref name="id"/> whatever state they are in (a test's finally: failures are ignored).</summary>
    public async Task RemoveAsync(string id)
    {
        await CtrAsync(CancellationToken.None, "task", "rm", "-f", id);
        await CtrAsync(CancellationToken.None, "containers", "rm", id);
    }

    /// <summary>A new directory <paramref name="name"/> under <see cref="Root"/> (removed with the fixture).</summary>
    public string CreateDirectory(string name) => Directory.CreateDirectory(Path.Combine(Root, name)).FullName;

    /// <summary>The bundle containerd made for task <paramref name="id"/> (its runtime v2 state directory).</summary>
    public string Bundle(string id) => Path.Combine(Root, "state", "io.containerd.runtime.v2.task", Namespace, id);

    /// <summary>Asserts that containerd holds no snapshot view and no lease Vessel made (seed 002's boot artifacts).</summary>
    public async Task AssertNoViewOrLeaseAsync(CancellationToken cancellationToken)
    {
        string snapshots = (await CtrAsync(cancellationToken, "snapshots", "ls")).EnsureSuccess().StandardOutput;
        Assert.DoesNotContain("vessel-view-", snapshots, StringComparison.Ordinal);
        string leases = (await CtrAsync(cancellationToken, "leases", "ls")).EnsureSuccess().StandardOutput;
        Assert.DoesNotContain("vessel-", leases, StringComparison.Ordinal);
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
