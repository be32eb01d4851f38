namespace Vessel.IntegrationTests.Containerd;

/// <summary>
/// A private containerd (root, state and sockets in a temp directory, CRI off) with test
/// images imported: started once for the containerd tests, stopped at the end with its
/// children killed, everything under its root unmounted and the directory deleted.
/// </summary>
public sealed class ContainerdFixture : IAsyncLifetime
{
    public static readonly string[] Requirements = ["root", "containerd", "ctr", "umoci", "skopeo"];

    /// <summary>The timeout of each test of the collection (its attribute\'s, and its cancellation\'s).</summary>
    public const int TestTimeout = 120_000;

    public const string Namespace = "vessel-test";

    /// <summary>One layer, uncompressed: kernel, initrd, config, and a symlink to the kernel.</summary>
    public const string SingleImage = "vessel-test/single:1";

    /// <summary>
    /// Three gzip layers: 1 has kernel v1 and an old initrd; 2 adds the initrd and config and
    /// deletes the old initrd (whiteout); 3 replaces the kernel and adds /kernel -> boot/vmlinuz.
    /// </summary>
    public const string MultiImage = "vessel-test/multi:1";

    /// <summary>Like the single image plus a marker file, imported without unpacking: no snapshot, so no view.</summary>
    public const string PackedImage = "vessel-test/packed:1";

    private TempDirectory? _dir;
    private Process? _daemon;

    public string Root => _dir!.Path;

    public string Socket => Path.Combine(Root, "containerd.sock");

    public byte[] KernelV1 { get; } = RandomBytes(200_000, 1);

    public byte[] KernelV2 { get; } = RandomBytes(300_000, 2);

    public byte[] Initrd { get; } = RandomBytes(150_000, 3);

    public byte[] Config { get; } = "{\"hypervisor\":\"qemu\",\"unikernelType\":\"linux\"}\n"u8.ToArray();

    public bool Started => _daemon is not null;

    public async Task InitializeAsync()
    {
        if (global::Vessel.Testing.Requirements.FirstMissing(Requirements) is not null)
        {
            return;
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        _dir = TempDirectory.Create("vessel-ctrd-");
        _daemon = await StartDaemonAsync(Root, Socket, new Dictionary<string, string>(), cts.Token);

        string layout = Path.Combine(Root, "oci");
        await Run(cts.Token, "umoci", "init", "--layout", layout);
        await BuildSingleAsync(layout, "single", cts.Token);
        await BuildMultiAsync(layout, cts.Token);
        await ImportAsync(layout, "single", SingleImage, [], cts.Token);
        await ImportAsync(layout, "multi", MultiImage, ["--compress-blobs"], cts.Token);
        await BuildSingleAsync(layout, "packed", cts.Token);
        await ImportAsync(layout, "packed", PackedImage, ["--no-unpack"], cts.Token);
    }

    /// <summary>
    /// Starts a private containerd with its root, state and sockets under <paramref name="root"/>
    /// (CRI off), its environment extended by <paramref name="environment"/>, and waits until it
    /// answers Version. The caller owns the process (kill its tree, then unmount under root).
    /// </summary>
    public static async Task<Process> StartDaemonAsync(string root, string socket, IReadOnlyDictionary<string, string> environment, CancellationToken cancellationToken)
    {
        string config = Path.Combine(root, "config.toml");
        await File.WriteAllTextAsync(config, $"""
            version = 2
            root = "{root}/root"
            state = "{root}/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "{socket}"
            [ttrpc]
              address = "{socket}.ttrpc"
            """, cancellationToken);
        var psi = new ProcessStartInfo("containerd")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(config);
        foreach ((string name, string value) in environment)
        {
            psi.Environment[name] = value;
        }
        Process daemon = Process.Start(psi)!;
        daemon.OutputDataReceived += (_, _) => { };
        daemon.ErrorDataReceived += (_, _) => { };
        daemon.BeginOutputReadLine();
        daemon.BeginErrorReadLine();
        using var client = new ContainerdClient(socket, Namespace);
        while (true)
        {
            try
            {
                await client.VersionAsync(cancellationToken);
                return daemon;
            }
            catch (VesselException) when (!daemon.HasExited)
            {
                await Task.Delay(100, cancellationToken);
            }
        }
    }

    public async Task DisposeAsync()
    {
        if (_daemon is not null)
        {
            await StopDaemonAsync(_daemon);
        }
        if (_dir is not null)
        {
            RemoveDirectory(_dir);
        }
    }

    /// <summary>Kills a containerd from <see cref="StartDaemonAsync"/> with its children, waits for it and disposes it.</summary>
    public static async Task StopDaemonAsync(Process daemon)
    {
        try
        {
            daemon.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
        await daemon.WaitForExitAsync();
        daemon.Dispose();
    }

    /// <summary>Unmounts everything under a private containerd's directory, deepest first, and deletes it.</summary>
    public static void RemoveDirectory(TempDirectory directory)
    {
        foreach (string mount in LinuxMount.MountsUnder(directory.Path).OrderByDescending(m => m.Length))
        {
            LinuxMount.UnmountAll(mount);
        }
        directory.Dispose();
    }

    public Task<ProcessResult> CtrAsync(CancellationToken cancellationToken, params string[] args)
        => ExternalProcess.RunAsync("ctr", ["-a", Socket, "-n", Namespace, .. args], cancellationToken, timeout: TimeSpan.FromMinutes(1));

    /// <summary>A fresh bundle directory (and an output path beside it) for one test.</summary>
    public (string Bundle, string Out) NewBundle()
    {
        string dir = Path.Combine(Root, "bundles", Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Path.Combine(dir, "bundle"));
        return (Path.Combine(dir, "bundle"), Path.Combine(dir, "out"));
    }

    /// <summary>Asserts, with ctr and the mount table as oracles, that no lease, view or mount of Vessel's is left.</summary>
    public async Task AssertNothingLeftAsync(string bundle, string output, CancellationToken cancellationToken)
    {
        string leases = (await CtrAsync(cancellationToken, "leases", "ls")).EnsureSuccess().StandardOutput;
        Assert.DoesNotContain("vessel-", leases, StringComparison.Ordinal);
        string snapshots = (await CtrAsync(cancellationToken, "snapshots", "ls")).EnsureSuccess().StandardOutput;
        Assert.DoesNotContain("vessel-view-", snapshots, StringComparison.Ordinal);
        Assert.DoesNotContain(" View", snapshots, StringComparison.Ordinal);
        Assert.Empty(LinuxMount.MountsUnder(bundle));
        Assert.Empty(LinuxMount.MountsUnder(output));
        Assert.False(File.Exists(Path.Combine(bundle, "vessel-artifacts.json")), "the state file is left");
        Assert.False(Directory.Exists(Path.Combine(bundle, "vessel-view")), "the view mount point is left");
        Assert.False(Directory.Exists(output), "the output directory Vessel created is left");
    }

    private async Task BuildSingleAsync(string layout, string tag, CancellationToken cancellationToken)
    {
        await Run(cancellationToken, "umoci", "new", "--image", layout + ":" + tag);
        await EditAsync(layout, tag, rootfs =>
        {
            File.WriteAllText(Path.Combine(rootfs, "tag"), tag);
            Directory.CreateDirectory(Path.Combine(rootfs, "boot"));
            File.WriteAllBytes(Path.Combine(rootfs, "boot/vmlinuz"), KernelV1);
            File.WriteAllBytes(Path.Combine(rootfs, "boot/initrd.img"), Initrd);
            File.WriteAllBytes(Path.Combine(rootfs, "urunc.json"), Config);
            File.CreateSymbolicLink(Path.Combine(rootfs, "vmlinuz"), "boot/vmlinuz");
            // Absolute and escaping links must resolve inside the image, never on the host.
            File.CreateSymbolicLink(Path.Combine(rootfs, "escape"), "../../../../urunc.json");
            File.CreateSymbolicLink(Path.Combine(rootfs, "passwd"), "/etc/passwd");
        }, cancellationToken);
    }

    private async Task BuildMultiAsync(string layout, CancellationToken cancellationToken)
    {
        await Run(cancellationToken, "umoci", "new", "--image", layout + ":multi");
        await EditAsync(layout, "multi", rootfs =>
        {
            Directory.CreateDirectory(Path.Combine(rootfs, "boot"));
            File.WriteAllBytes(Path.Combine(rootfs, "boot/vmlinuz"), KernelV1);
            File.WriteAllBytes(Path.Combine(rootfs, "boot/old-initrd"), Initrd);
        }, cancellationToken);
        await EditAsync(layout, "multi", rootfs =>
        {
            File.WriteAllBytes(Path.Combine(rootfs, "boot/initrd.img"), Initrd);
            File.WriteAllBytes(Path.Combine(rootfs, "urunc.json"), Config);
            File.Delete(Path.Combine(rootfs, "boot/old-initrd"));
        }, cancellationToken);
        await EditAsync(layout, "multi", rootfs =>
        {
            File.WriteAllBytes(Path.Combine(rootfs, "boot/vmlinuz"), KernelV2);
            File.CreateSymbolicLink(Path.Combine(rootfs, "kernel"), "boot/vmlinuz");
        }, cancellationToken);
    }

    private async Task EditAsync(string layout, string tag, Action<string> edit, CancellationToken cancellationToken)
    {
        string bundle = Path.Combine(Root, "umoci-" + tag);
        await Run(cancellationToken, "umoci", "unpack", "--rootless", "--image", layout + ":" + tag, bundle);
        edit(Path.Combine(bundle, "rootfs"));
        await Run(cancellationToken, "umoci", "repack", "--image", layout + ":" + tag, bundle);
        Directory.Delete(bundle, recursive: true);
    }

    private async Task ImportAsync(string layout, string tag, string name, string[] flags, CancellationToken cancellationToken)
    {
        string archive = Path.Combine(Root, tag + "-" + flags.Length + ".tar");
        File.Delete(archive);
        await Run(cancellationToken, "skopeo", "copy", "--quiet", $"oci:{layout}:{tag}", $"docker-archive:{archive}:{name}");
        (await CtrAsync(cancellationToken, ["images", "import", .. flags, archive])).EnsureSuccess();
        File.Delete(archive);
    }

    private static async Task Run(CancellationToken cancellationToken, string tool, params string[] args)
        => (await ExternalProcess.RunAsync(tool, args, cancellationToken, timeout: TimeSpan.FromMinutes(2))).EnsureSuccess();

    private static byte[] RandomBytes(int length, int seed)
    {
        byte[] data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}

[CollectionDefinition(Name)]
public sealed class ContainerdCollection : ICollectionFixture<ContainerdFixture>
{
    public const string Name = "containerd";
}
