using static Vessel.IntegrationTests.Sandboxes.SandboxShell;

namespace Vessel.IntegrationTests.Network;

/// <summary>slirp (QEMU's libslirp, the default) against passt, in one run (docs/BENCHMARKS.md, "slirp or passt").</summary>
public sealed partial class NetworkTests
{
    // A measurement more than a check: the same guest -> host path (the gateway 10.0.2.2, which
    // both stacks map to the host's loopback, each connect decided by the filter: in QEMU for
    // slirp, in passt for passt) on each backend, then whether the filter still refuses an
    // unnamed host port under passt and passt lives on after refusing it.
    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "clang", "passt", Timeout = 900_000)]
    public async Task Slirp_and_passt_are_measured_guest_to_host_in_one_run_and_both_filter_the_host()
    {
        const long total = 256L << 20;
        using var sink = new TcpListener(IPAddress.Loopback, 0);
        sink.Start();
        int port = ((IPEndPoint)sink.LocalEndpoint).Port;
        await using var unnamed = new HostHttpServer("from-unnamed");
        await using var allowed = new HostHttpServer("from-allowed");
        var network = NetworkConfig.Default with { Allow = [NetworkRule.Parse("127.0.0.1:" + port), NetworkRule.Parse("127.0.0.1:" + allowed.Port)] };
        foreach (NetworkBackend backend in new[] { NetworkBackend.Slirp, NetworkBackend.Passt })
        {
            await using Sandbox sandbox = await _env.Manager.CreateAsync(new SandboxOptions { RootfsPath = _env.RootfsPath, Network = network, NetworkBackend = backend }, CancellationToken.None);
            (double p50, double p90) = await GuestEchoAsync(sandbox, sink, NetworkConfig.Gateway, port);
            (double mibPerSecond, long received) = await TransferAsync(sandbox, sink, NetworkConfig.Gateway, port, total);
            string log = Path.Combine(sandbox.WorkDirectory, "passt.log");
            _output.WriteLine(FormattableString.Invariant($"{backend}, {sandbox.VirtualMachine.Acceleration}: guest->host {received >> 20} of 256 MiB at {mibPerSecond:0.0} MiB/s; 1-byte echo on a guest-opened connection p50 {p50:0.000} ms, p90 {p90:0.000} ms; boot to agent ready {sandbox.Timings.AgentReady.TotalMilliseconds:0} ms"));
            if (received < total && File.Exists(log))
            {
                _output.WriteLine($"passt's log:\n{string.Join('\n', File.ReadLines(log).TakeLast(20))}");
            }
            Assert.True(mibPerSecond > 0.5, $"{backend}: {mibPerSecond} MiB/s");
            // slirp carries the whole stream. passt 0.0~git20230309 under TCG was seen to end it early
            // (97 of 256 MiB, docs/BENCHMARKS.md "slirp or passt"): measured and reported, not required.
            Assert.True(backend != NetworkBackend.Slirp || received == total, $"slirp: the guest stopped after {received} bytes");
            (int code, string output) = await ExecAsync(sandbox, $"rm -f /tmp/o; busybox timeout 10 busybox wget -q -O /tmp/o http://{NetworkConfig.Gateway}:{unnamed.Port}/f; echo rc=$?; cat /tmp/o 2>/dev/null");
            Assert.DoesNotContain("rc=0", output, StringComparison.Ordinal);
            (code, output) = await ExecAsync(sandbox, $"busybox timeout 30 busybox wget -q -O - http://{NetworkConfig.Gateway}:{allowed.Port}/f");
            bool alive = code == 0 && output.Contains("from-allowed", StringComparison.Ordinal);
            _output.WriteLine($"{backend}: after the filter refused a connect, the allowed port {(alive ? "still answers" : $"answers no more (wget {code})")}");
            // slirp must survive a refusal. passt 0.0~git20230309 was seen to stop answering after one
            // (docs/BENCHMARKS.md "slirp or passt"): reported, the reason passt stays unselectable.
            Assert.True(alive || backend != NetworkBackend.Slirp, $"{backend}: after a refused connect the allowed port answers no more ({code}): {output}");
        }
        Assert.Equal(0, unnamed.Requests);
        Assert.InRange(allowed.Requests, 1, 2);
        _env.AssertNothingLeft();
    }

    // What each backend adds to a cold boot and to a snapshot restore, alternating (a restore
    // needs a snapshot taken with the same backend: the netdev differs).
    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "clang", "passt", Timeout = 900_000)]
    public async Task Cold_boot_and_restore_are_measured_on_slirp_and_on_passt()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        NetworkBackend[] backends = [NetworkBackend.Slirp, NetworkBackend.Passt];
        await using var host = new HostHttpServer("from-host");
        var allowHost = NetworkConfig.Default with { Allow = [NetworkRule.Parse("127.0.0.1:" + host.Port)] };
        var (boots, restores) = await MeasureBootAndRestoreAsync("netbackends", backends, (options, backend) => options with { NetworkBackend = backend },
            new RestoreCheck<NetworkBackend>(options => options with { Network = allowHost }, async (restored, backend) =>
            {
                // The restored guest's network works on its new stack (new host-side sockets, the same guest addresses).
                (int code, string output) = await ExecAsync(restored, $"busybox timeout 30 busybox wget -q -O - http://{NetworkConfig.Gateway}:{host.Port}/f");
                Assert.True(code == 0 && output.Contains("from-host", StringComparison.Ordinal), $"{backend}, restored: {code} {output}");
            }), cts.Token);
        foreach (NetworkBackend backend in backends)
        {
            _output.WriteLine(FormattableString.Invariant(
                $"{backend}: cold boot to agent ready median {Median(boots[backend]):0} ms (all: {All(boots[backend])}); snapshot restore median {Median(restores[backend]):0} ms (all: {All(restores[backend])})"));
        }
        Assert.Equal(2 * MeasureRounds, host.Requests);
        _env.AssertNothingLeft();
    }
}
