using System.CommandLine;
using Vessel.Vmm;

namespace Vessel.Cli.Commands;

/// <summary><c>--net</c>, <c>--no-net</c>, <c>--allow</c> and <c>--deny</c>: a sandbox's <see cref="NetworkConfig"/>.</summary>
internal sealed class NetworkOptions
{
    private readonly Option<bool> _net = new("--net") { Description = "Outbound network through QEMU's user-mode network (the default)." };
    private readonly Option<bool> _noNet = new("--no-net") { Description = "No outbound network: the guest reaches only the host ports --allow names (as host.vessel.internal:PORT)." };
    private readonly Option<string> _outbound = new("--outbound") { Description = "on (everything but the host and --deny), restrict (only --allow) or off (same as --no-net)." };
    private readonly Option<string[]> _allow = new("--allow") { Description = "CIDR or HOST:PORT the guest may reach; the host's loopback only as 127.0.0.1:PORT or localhost:PORT (also reached as host.vessel.internal:PORT); repeatable." };
    private readonly Option<string[]> _deny = new("--deny") { Description = "CIDR or HOST:PORT the guest may not reach, enforced in QEMU outside the guest; repeatable." };

    public void AddTo(Command command) => command.WithOptions(_net, _noNet, _outbound, _allow, _deny);

    /// <summary>The options as the daemon's create request takes them (null when none was given: the daemon's default).</summary>
    public Vessel.Client.SandboxNetwork? GetForDaemon(ParseResult parse)
    {
        string[] allow = parse.GetValue(_allow) ?? [];
        string[] deny = parse.GetValue(_deny) ?? [];
        string? outbound = parse.GetValue(_outbound);
        if (!parse.GetValue(_net) && !parse.GetValue(_noNet) && outbound is null && allow.Length == 0 && deny.Length == 0)
        {
            return null;
        }
        NetworkConfig config = Get(parse); // checked here, before the request
        return new Vessel.Client.SandboxNetwork
        {
            Outbound = parse.GetValue(_net) || parse.GetValue(_noNet) || outbound is not null
                ? config.Outbound switch { NetworkOutbound.On => Vessel.Client.SandboxOutbound.On, NetworkOutbound.Restrict => Vessel.Client.SandboxOutbound.Restrict, _ => Vessel.Client.SandboxOutbound.Off }
                : null,
            Allow = allow,
            Deny = deny,
        };
    }

    public NetworkConfig Get(ParseResult parse)
    {
        string? outbound = parse.GetValue(_outbound);
        if ((parse.GetValue(_net) ? 1 : 0) + (parse.GetValue(_noNet) ? 1 : 0) + (outbound is null ? 0 : 1) > 1)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "--net, --no-net and --outbound contradict each other: give one.");
        }
        var config = NetworkConfig.Default with
        {
            Outbound = outbound is not null ? NetworkConfig.ParseOutbound(outbound) : parse.GetValue(_noNet) ? NetworkOutbound.Off : NetworkOutbound.On,
            Allow = [.. (parse.GetValue(_allow) ?? []).Select(NetworkRule.Parse)],
            Deny = [.. (parse.GetValue(_deny) ?? []).Select(NetworkRule.Parse)],
        };
        config.Validate();
        return config;
    }
}
