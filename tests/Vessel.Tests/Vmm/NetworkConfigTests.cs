namespace Vessel.Tests.Vmm;

public sealed class NetworkConfigTests
{
    [Theory]
    [InlineData("127.0.0.1:8080", "127.0.0.1", 8080, null)]
    [InlineData("localhost:80", "localhost", 80, null)]
    [InlineData("host.vessel.internal:65535", "host.vessel.internal", 65535, null)]
    [InlineData("10.0.0.0/8", "10.0.0.0", null, 8)]
    public void Rules_parse_host_port_and_cidr(string text, string host, int? port, int? prefix)
    {
        NetworkRule rule = NetworkRule.Parse(text);
        Assert.Equal(new NetworkRule(host, port, prefix), rule);
        Assert.Equal(text, rule.ToString());
    }

    [Fact]
    public void Outbound_on_is_the_default_and_runs_slirp_unrestricted_with_a_fixed_mac()
    {
        string line = string.Join(' ', NetworkConfig.Default.QemuArguments("/usr/bin/busybox nc"));
        Assert.Equal("-netdev user,id=net0,net=10.0.2.0/24,ipv6=off,restrict=off -device virtio-net-device,netdev=net0,mac=52:54:00:12:34:56", line);
        Assert.Equal(NetworkOutbound.On, new Vessel.Sandboxes.SandboxOptions().Network.Outbound);
    }

    [Fact]
    public void An_isolated_network_is_restricted_and_forwards_only_allowed_host_ports()
    {
        var config = NetworkConfig.Isolated with { Allow = [NetworkRule.Parse("127.0.0.1:8080"), NetworkRule.Parse("localhost:8080"), NetworkRule.Parse("host.vessel.internal:9000")] };
        string netdev = config.QemuArguments("/opt/a,b/busybox nc")[1];
        Assert.Equal("user,id=net0,net=10.0.2.0/24,ipv6=off,restrict=on,guestfwd=tcp:10.0.2.254:8080-cmd:/opt/a,,b/busybox nc 127.0.0.1 8080,guestfwd=tcp:10.0.2.254:9000-cmd:/opt/a,,b/busybox nc 127.0.0.1 9000", netdev);
    }

    [Theory]
    [InlineData("10.0.0.0/8")]
    [InlineData("example.org:443")]
    public void With_outbound_off_only_host_loopback_ports_can_be_allowed(string rule)
    {
        var config = NetworkConfig.Isolated with { Allow = [NetworkRule.Parse(rule)] };
        VesselException e = Assert.Throws<VesselException>(config.Validate);
        Assert.Equal(VesselErrorReason.Unsupported, e.Reason);
        Assert.Contains(rule, e.Message, StringComparison.Ordinal);
        (config with { Outbound = NetworkOutbound.Restrict }).Validate();
    }

    [Fact]
    public async Task Filter_rules_list_the_policy_the_resolvers_then_allow_and_deny_entries()
    {
        var config = NetworkConfig.Default with
        {
            Allow = [NetworkRule.Parse("localhost:8080"), NetworkRule.Parse("host.vessel.internal:9000"), NetworkRule.Parse("10.1.0.0/16")],
            Deny = [NetworkRule.Parse("192.168.0.0/16"), NetworkRule.Parse("127.0.0.1:8080")],
        };
        string rules = await NetworkFilter.RulesAsync(config, [System.Net.IPAddress.Parse("127.0.0.53")], CancellationToken.None);
        Assert.Equal("on +127.0.0.53/32:53 +127.0.0.1/32:8080 +127.0.0.1/32:9000 +10.1.0.0/16:0 -192.168.0.0/16:0 -127.0.0.1/32:8080", rules);
        Assert.StartsWith("restrict +127.0.0.53/32:53 ", await NetworkFilter.RulesAsync(config with { Outbound = NetworkOutbound.Restrict }, [System.Net.IPAddress.Parse("127.0.0.53")], CancellationToken.None), StringComparison.Ordinal);
        Assert.Equal("restrict", await NetworkFilter.RulesAsync(NetworkConfig.Isolated, [System.Net.IPAddress.Parse("127.0.0.53")], CancellationToken.None));
    }

    [Fact]
    public void A_denied_host_port_gets_no_guestfwd_relay()
    {
        var config = NetworkConfig.Default with
        {
            Allow = [NetworkRule.Parse("127.0.0.1:8080"), NetworkRule.Parse("127.0.0.1:9000")],
            Deny = [NetworkRule.Parse("localhost:8080")],
        };
        string netdev = config.QemuArguments("busybox nc")[1];
        Assert.Equal("user,id=net0,net=10.0.2.0/24,ipv6=off,restrict=off,guestfwd=tcp:10.0.2.254:9000-cmd:busybox nc 127.0.0.1 9000", netdev);
        Assert.DoesNotContain("guestfwd", (config with { Deny = [NetworkRule.Parse("127.0.0.0/8")] }).QemuArguments("busybox nc")[1], StringComparison.Ordinal);
    }
}
