using System.Net.NetworkInformation;

namespace Vessel.Tests.Vmm;

/// <summary>
/// The compiled connect filter in a real dynamically linked program (bash's /dev/tcp calls libc's
/// connect, as libslirp does in QEMU), against real listeners on this machine.
/// </summary>
public sealed class NetworkFilterTests : IDisposable
{
    private readonly TempDirectory _work = TempDirectory.Create("vnf-");

    public void Dispose() => _work.Dispose();

    private async Task<(bool Connected, string Output)> ConnectAsync(string rules, IPAddress address, int port)
    {
        string library = await NetworkFilter.EnsureLibraryAsync(_work.Combine("lib"), CancellationToken.None);
        ProcessResult result = await ExternalProcess.RunAsync("bash", ["-c", $"exec 3<>/dev/tcp/{address}/{port} && echo connected"], CancellationToken.None,
            timeout: TimeSpan.FromSeconds(30), environment: new NetworkFilter(library, rules).Environment);
        return (result.ExitCode == 0 && result.StandardOutput.Contains("connected", StringComparison.Ordinal), result.StandardError);
    }

    [RequiresFact("clang", "bash")]
    public async Task Host_loopback_is_refused_unless_an_allow_rule_names_it_and_a_deny_rule_wins()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        Assert.False((await ConnectAsync("on", IPAddress.Loopback, port)).Connected);
        Assert.True((await ConnectAsync($"on +127.0.0.1/32:{port}", IPAddress.Loopback, port)).Connected);
        Assert.False((await ConnectAsync($"on +127.0.0.1/32:{port + 1}", IPAddress.Loopback, port)).Connected);
        Assert.False((await ConnectAsync($"on +127.0.0.1/32:{port} -127.0.0.0/8:0", IPAddress.Loopback, port)).Connected);
        // A wide rule does not name the host: only an exact address does.
        Assert.False((await ConnectAsync("restrict +0.0.0.0/0:0", IPAddress.Loopback, port)).Connected);
        Assert.True((await ConnectAsync($"restrict +127.0.0.1/32:0", IPAddress.Loopback, port)).Connected);
    }

    [RequiresFact("clang", "bash")]
    public async Task The_hosts_own_addresses_count_as_the_host()
    {
        IPAddress? own = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up && n.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(u => u.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork);
        Assert.True(own is not null, "this machine has no non-loopback IPv4 address to test with");
        using var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        Assert.False((await ConnectAsync("on", own!, port)).Connected);
        Assert.False((await ConnectAsync("on", IPAddress.Any, port)).Connected);
        Assert.True((await ConnectAsync($"on +{own}/32:{port}", own!, port)).Connected);
    }

    [RequiresFact("clang", "/usr/bin/python3")]
    public async Task A_process_may_connect_to_its_own_loopback_listener_as_slirp_does_for_guestfwd()
    {
        string library = await NetworkFilter.EnsureLibraryAsync(_work.Combine("lib"), CancellationToken.None);
        using var other = new TcpListener(IPAddress.Loopback, 0); // another process's service
        other.Start();
        const string Script = """
            import socket, sys
            l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
            c = socket.create_connection(l.getsockname()); print('own ok')
            try:
                socket.create_connection(('127.0.0.1', int(sys.argv[1]))); print('other connected')
            except ConnectionRefusedError:
                print('other refused')
            """;
        ProcessResult result = await ExternalProcess.RunAsync("/usr/bin/python3", ["-c", Script, ((IPEndPoint)other.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            CancellationToken.None, timeout: TimeSpan.FromSeconds(30), environment: new NetworkFilter(library, "on").Environment);
        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Contains("own ok", result.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("other refused", result.StandardOutput, StringComparison.Ordinal);
    }

    [RequiresFact("clang", "bash")]
    public async Task A_malformed_rule_stops_the_program_at_start_naming_it()
    {
        (bool connected, string output) = await ConnectAsync("on +300.1.2.3/8:80", IPAddress.Loopback, 1);
        Assert.False(connected);
        Assert.Contains("vessel network filter: bad address: 300.1.2.3", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Nameservers_are_read_from_resolv_conf()
    {
        string path = _work.Combine("resolv.conf");
        File.WriteAllText(path, "# comment\nnameserver 127.0.0.53\nsearch example\nnameserver\t::1\noptions edns0\n");
        Assert.Equal([IPAddress.Parse("127.0.0.53"), IPAddress.IPv6Loopback], NetworkFilter.ReadNameservers(path));
        Assert.Empty(NetworkFilter.ReadNameservers(_work.Combine("missing")));
    }
}
