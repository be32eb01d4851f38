using System.Net;
using Vessel.Common;
using Vessel.State;

namespace Vessel.Cli.Serve.Cluster;

/// <summary>
/// What <c>vessel serve --cluster</c> joins with (docs/cluster.md): this node's name, the address
/// other nodes reach its silo and API at, the Orleans ports, the membership timings and the
/// PostgreSQL database that holds both Vessel's state and Orleans' membership table.
/// </summary>
internal sealed record ClusterConfig(string Node, IPAddress Address, Uri ApiUrl, int SiloPort, int GatewayPort, TimeSpan ProbeTimeout, string ConnectionString)
{
    /// <summary>Orleans' cluster and service id: every Vessel node of a database is one cluster.</summary>
    public const string ClusterId = "vessel";

    /// <summary>How often a node writes its heartbeat row (running VMs, memory, builds).</summary>
    public TimeSpan HeartbeatInterval => TimeSpan.FromSeconds(2);

    /// <summary>The cluster settings of a daemon listening on <paramref name="listen"/> over <paramref name="state"/>; a clear error for what cannot work.</summary>
    public static ClusterConfig Create(VesselSettings settings, string node, StateStore state, IPEndPoint? listen)
    {
        if (state is not PostgresStateStore postgres)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"--cluster needs the state in PostgreSQL that every node shares (VESSEL_STATE=postgres://...); this daemon's state is {state.Location} (docs/cluster.md).");
        }
        if (listen is null)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "--cluster needs --listen HOST:PORT: the other nodes forward requests to this node's TCP API.");
        }
        IPAddress address = settings.ClusterAddress is { } a
            ? IPAddress.TryParse(a, out IPAddress? parsed) ? parsed : throw new VesselException(VesselErrorReason.InvalidInput, $"VESSEL_CLUSTER_ADDRESS: '{a}' is not an IP address.")
            : listen.Address.Equals(IPAddress.Any) || listen.Address.Equals(IPAddress.IPv6Any)
                ? throw new VesselException(VesselErrorReason.InvalidInput, $"--listen {listen} names no address the other nodes can reach: set VESSEL_CLUSTER_ADDRESS to this node's IP address.")
                : listen.Address;
        if (string.IsNullOrWhiteSpace(node) || node.Length > 150 || node.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"--node: '{node}' is not a node name (1 to 150 characters, no spaces).");
        }
        var api = new Uri($"http://{new IPEndPoint(address, listen.Port)}/");
        return new ClusterConfig(node, address, api, settings.SiloPort, settings.GatewayPort, TimeSpan.FromMilliseconds(settings.ClusterProbeMilliseconds), postgres.ConnectionString);
    }
}
