namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>One booted busybox sandbox (the test image from Debian's busybox-static) (real QEMU, TCG) shared by the exec and file tests of this class.</summary>
public sealed class BootedSandbox : IAsyncLifetime
{
    private readonly SandboxEnvironment _environment;

    public BootedSandbox(SandboxEnvironment environment)
    {
        _environment = environment;
    }

    public Sandbox? Sandbox { get; private set; }

    public async Task InitializeAsync()
    {
        if (SandboxEnvironment.Available)
        {
            Sandbox = await _environment.Manager.CreateAsync(new SandboxOptions { RootfsPath = _environment.RootfsPath }, CancellationToken.None);
        }
    }

    public async Task DisposeAsync()
    {
        if (Sandbox is not null)
        {
            await Sandbox.DisposeAsync();
            _environment.AssertNothingLeft();
        }
    }
}

[Collection(SandboxCollection.Name)]
public sealed class SandboxExecTests : IClassFixture<BootedSandbox>
{
    private readonly Sandbox? _sandbox;

    public SandboxExecTests(BootedSandbox booted)
    {
        _sandbox = booted.Sandbox;
    }

    private async Task<(ExitStatus Status, string Stdout, string Stderr)> RunAsync(ExecRequest request, string? stdin = null)
    {
        using var stdout = new MemoryStream();
        using var stderr = new MemoryStream();
        using var input = stdin is null ? null : new MemoryStream(Encoding.UTF8.GetBytes(stdin));
        ExitStatus status = await _sandbox!.ExecAsync(request, input, stdout, stderr, CancellationToken.None);
        return (status, Encoding.UTF8.GetString(stdout.ToArray()), Encoding.UTF8.GetString(stderr.ToArray()));
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Echo_runs_in_the_busybox_guest()
    {
        var (status, stdout, _) = await RunAsync(new ExecRequest(["sh", "-c", "echo hello from $(cat /etc/vessel-test-release) on $(uname -r)"]));
        Assert.Equal(0, status.ExitCode);
        Assert.StartsWith("hello from busybox-test 1 on 6.1.0-", stdout, StringComparison.Ordinal);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Failing_command_reports_its_exit_code_and_stderr()
    {
        var (status, _, stderr) = await RunAsync(new ExecRequest(["ls", "/does-not-exist"]));
        Assert.NotEqual(0, status.ExitCode);
        Assert.Contains("does-not-exist", stderr, StringComparison.Ordinal);
        var (status42, _, _) = await RunAsync(new ExecRequest(["sh", "-c", "exit 42"]));
        Assert.Equal(42, status42.ExitCode);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Command_reads_stdin()
    {
        var (status, stdout, _) = await RunAsync(new ExecRequest(["wc", "-l"]), "a\nb\nc\n");
        Assert.Equal(0, status.ExitCode);
        Assert.Equal("3", stdout.Trim());
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Long_running_command_is_killed_by_its_timeout_and_by_a_signal()
    {
        var clock = Stopwatch.StartNew();
        var (status, stdout, _) = await RunAsync(new ExecRequest(["sh", "-c", "echo started; sleep 600; echo never"]) { Timeout = TimeSpan.FromSeconds(2) });
        Assert.True(status.TimedOut);
        Assert.Equal("started\n", stdout);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60));

        using ExecSession session = await _sandbox!.Agent.StartAsync(new ExecRequest(["sleep", "600"]), CancellationToken.None);
        await session.SignalAsync(9, CancellationToken.None);
        ExitStatus killed = await session.WaitAsync(null, null, CancellationToken.None);
        Assert.Equal(9, killed.Signal);
        Assert.Equal(137, killed.ExitCode);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Two_commands_run_at_once()
    {
        // Each waits for the other's file: they finish only if both run concurrently.
        Task<(ExitStatus, string, string)> a = RunAsync(new ExecRequest(["sh", "-c", "touch /tmp/a; while [ ! -e /tmp/b ]; do sleep 0.1; done; echo a"]) { Timeout = TimeSpan.FromSeconds(60) });
        Task<(ExitStatus, string, string)> b = RunAsync(new ExecRequest(["sh", "-c", "touch /tmp/b; while [ ! -e /tmp/a ]; do sleep 0.1; done; echo b"]) { Timeout = TimeSpan.FromSeconds(60) });
        var results = await Task.WhenAll(a, b);
        Assert.Equal("a\n", results[0].Item2);
        Assert.Equal("b\n", results[1].Item2);
        Assert.All(results, r => Assert.False(r.Item1.TimedOut));
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task A_50_MiB_file_is_written_and_read_back()
    {
        byte[] data = new byte[50 << 20];
        new Random(7).NextBytes(data);
        await _sandbox!.Agent.WriteFileAsync("/root/big.bin", new MemoryStream(data), 0x1A4, CancellationToken.None);
        var (status, stdout, _) = await RunAsync(new ExecRequest(["sha256sum", "/root/big.bin"]));
        Assert.Equal(0, status.ExitCode);
        Assert.StartsWith(Convert.ToHexStringLower(SHA256.HashData(data)), stdout, StringComparison.Ordinal);
        using var back = new MemoryStream();
        long n = await _sandbox.Agent.ReadFileAsync("/root/big.bin", back, CancellationToken.None);
        Assert.Equal(data.Length, n);
        Assert.True(data.AsSpan().SequenceEqual(back.ToArray()));
        await _sandbox.Agent.RemoveAsync("/root/big.bin", recursive: false, CancellationToken.None);
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task Running_process_survives_the_host_reconnecting()
    {
        ExecSession first = await _sandbox!.Agent.StartAsync(new ExecRequest(["sh", "-c", "sleep 2; echo done; exit 5"]), CancellationToken.None);
        int pid = first.Pid;
        await _sandbox.ReconnectAsync(CancellationToken.None);
        using ExecSession again = await _sandbox.Agent.AttachAsync(pid, CancellationToken.None);
        using var stdout = new MemoryStream();
        ExitStatus status = await again.WaitAsync(stdout, null, CancellationToken.None);
        Assert.Equal(5, status.ExitCode);
        Assert.Equal("done\n", Encoding.UTF8.GetString(stdout.ToArray()));
    }
}
