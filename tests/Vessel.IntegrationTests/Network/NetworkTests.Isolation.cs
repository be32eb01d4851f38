using System.Net.NetworkInformation;
using static Vessel.IntegrationTests.Sandboxes.SandboxShell;

namespace Vessel.IntegrationTests.Network;

/// <summary>Isolation between sandboxes, and loopback in a real distribution's guest.</summary>
public sealed partial class NetworkTests
{
    // Both sandboxes serve on 8080 and forward it to the host; each then tries the other's server
    // through every address a guest could try: slirp's gateway and host.vessel.internal at the
    // other's forwarded host port, every address of the host's interfaces at that port, and the
    // guest address both share (10.0.2.15, which only ever leads back to itself).
    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "clang", Timeout = 600_000)]
    public async Task Two_sandboxes_cannot_reach_each_other_in_either_direction_through_any_address()
    {
        List<string> hostAddresses = [.. NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(u => u.Address)
            .Where(a => !a.IsIPv6LinkLocal)
            .Select(a => a.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{a}]" : a.ToString())];
        await using (Sandbox a = await _env.Manager.CreateAsync(new SandboxOptions { RootfsPath = _env.RootfsPath }, CancellationToken.None))
        await using (Sandbox b = await _env.Manager.CreateAsync(new SandboxOptions { RootfsPath = _env.RootfsPath }, CancellationToken.None))
        {
            await AssertApartAsync(a, b, hostAddresses);
        }
        _env.AssertNothingLeft();
    }

    private static async Task AssertApartAsync(Sandbox a, Sandbox b, List<string> hostAddresses)
    {
        var forwards = new Dictionary<Sandbox, int>();
        foreach ((Sandbox sandbox, string name) in new[] { (a, "in-a"), (b, "in-b") })
        {
            (int code, string output) = await ExecAsync(sandbox, $"mkdir -p /tmp/www && echo {name} > /tmp/www/f && busybox httpd -p 8080 -h /tmp/www");
            Assert.True(code == 0, output);
            forwards[sandbox] = (await sandbox.ForwardPortAsync(8080, CancellationToken.None)).Port;
        }
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) })
        {
            // Both servers answer the host, so a refusal below is the filter's, not a dead server.
            Assert.Equal("in-a\n", await http.GetStringAsync($"http://127.0.0.1:{forwards[a]}/f"));
            Assert.Equal("in-b\n", await http.GetStringAsync($"http://127.0.0.1:{forwards[b]}/f"));
        }
        foreach ((Sandbox from, Sandbox to, string theirs) in new[] { (a, b, "in-b"), (b, a, "in-a") })
        {
            int port = forwards[to];
            string[] urls =
            [
                $"http://{NetworkConfig.Gateway}:{port}/f", $"http://{NetworkConfig.HostAddress}:{port}/f", $"http://{NetworkConfig.HostName}:{port}/f",
                $"http://{NetworkConfig.GuestAddress}:8080/f", $"http://127.0.0.1:{port}/f",
                .. hostAddresses.Select(h => $"http://{h}:{port}/f"),
            ];
            foreach (string url in urls)
            {
                string output;
                try
                {
                    (_, output) = await ExecAsync(from, $"busybox timeout 10 busybox wget -q -O - {url}; echo rc=$?");
                }
                catch (VesselException e)
                {
                    throw new InvalidOperationException($"{url}: {e.Message}; {from.VirtualMachine.ExitReport}; console:\n{from.VirtualMachine.ConsoleTail()}", e);
                }
                Assert.DoesNotContain(theirs, output, StringComparison.Ordinal);
                if (!url.Contains(NetworkConfig.GuestAddress, StringComparison.Ordinal))
                {
                    Assert.DoesNotContain("rc=0", output, StringComparison.Ordinal);
                }
            }
        }
    }

    // python3 -m test test_os/test_socket-class checks without python (Debian's minbase has
    // perl-base, not python3): in a Debian guest, lo is up, localhost resolves to 127.0.0.1
    // through glibc, and a TCP server and client and a UDP pair talk over it.
    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "debian-image", Timeout = 900_000)]
    public async Task A_debian_guest_has_lo_up_resolves_localhost_and_a_tcp_and_udp_server_and_client_talk_over_it()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        Directory.CreateDirectory(_env.StateDirectory);
        string rootfs = Path.Combine(_env.StateDirectory, "debian-lo.ext4");
        try
        {
            await using (IImageSource image = await ImageSources.OpenAsync("tarball:" + TestImages.DebianTarball, new ImageSourceOptions(), cts.Token))
            {
                await RootfsBuilder.BuildAsync(image, rootfs, new RootfsBuildOptions { SizeBytes = 1L << 30 }, null, cts.Token);
            }
            await using Sandbox sandbox = await _env.Manager.CreateAsync(new SandboxOptions { RootfsPath = rootfs, CopyRootfs = false }, cts.Token);
            const string Perl = """
                use IO::Socket::INET;
                my $tcp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, Proto => 'tcp') or die "tcp listen: $!";
                my $udp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp') or die "udp bind: $!";
                my ($tp, $up) = ($tcp->sockport, $udp->sockport);
                if (fork() == 0) {
                    my $c = IO::Socket::INET->new(PeerAddr => 'localhost', PeerPort => $tp, Proto => 'tcp') or die "tcp connect: $!";
                    print $c "ping\n"; my $r = <$c>; print "tcp $r";
                    my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $up, Proto => 'udp') or die "udp: $!";
                    $u->send("dgram"); exit 0;
                }
                my $s = $tcp->accept or die "accept: $!"; my $l = <$s>; print $s "pong $l"; close $s;
                $udp->recv(my $d, 64); print "udp $d\n"; wait; exit($? >> 8);
                """;
            (int code, string output) = await ExecAsync(sandbox, $"cat > /tmp/lo.pl <<'PERL'\n{Perl}\nPERL\ncat /sys/class/net/lo/flags; getent ahostsv4 localhost | head -n 1; timeout 60 perl /tmp/lo.pl");
            Assert.True(code == 0, output);
            Assert.Contains("0x9", output, StringComparison.Ordinal); // IFF_UP | IFF_LOOPBACK
            Assert.Contains("127.0.0.1", output, StringComparison.Ordinal);
            Assert.Contains("tcp pong ping", output, StringComparison.Ordinal);
            Assert.Contains("udp dgram", output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(rootfs);
        }
        _env.AssertNothingLeft();
    }
}
