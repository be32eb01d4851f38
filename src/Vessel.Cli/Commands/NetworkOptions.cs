using System.CommandLine;
using Vessel.Vmm;

namespace Vessel.Cli.Commands;

/// <summary><c>--net</c>, <c>--no-net</c>, <c>--allow</c> and <c>--deny</c>: a sandbox's <see cref="NetworkConfig"/>.</summary>
internal sealed class NetworkOptions
{
    private readonly Option<bool> _net = new("--net") { Description = "Outbound network through QEMU's user-mode network (the default)." };
    private readonly Option<bool> _noNet = new("--no-net") { Description = "No outbound network: the guest reaches only the host ports --allow names (as host.vessel.internal:PORT)." };
    private readonly Option<string[]> _allow = new("--allow") { Description = "HOST:PORT the guest may reach (a host loopback port: 127.0.0.1:PORT, localhost:PORT); repeatable." };
    private readonly Option<string[]> _deny = new("--deny") { Description = "CIDR or HOST:PORT the guest may not reach; repeatable (refused: user-mode networking cannot filter, use --no-net with --allow)." };

    public void AddTo(Command command)
    {
        command.Options.Add(_net);
        command.Options.Add(_noNet);
        command.Options.Add(_allow);
        command.Options.Add(_deny);
    }

    public NetworkConfig Get(ParseResult parse)
    {
        if (parse.GetValue(_net) && parse.GetValue(_noNet))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "--net and --no-net contradict each other: give one.");
        }
        var config = (parse.GetValue(_noNet) ? NetworkConfig.Isolated : NetworkConfig.Default) with
        {
            Allow = [.. (parse.GetValue(_allow) ?? []).Select(NetworkRule.Parse)],
            Deny = [.. (parse.GetValue(_deny) ?? []).Select(NetworkRule.Parse)],
        };
        config.Validate();
        return config;
    }
}
