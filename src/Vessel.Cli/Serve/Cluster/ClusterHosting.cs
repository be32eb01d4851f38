using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Hosting;

namespace Vessel.Cli.Serve.Cluster;

/// <summary>
/// The Orleans silo inside <c>vessel serve --cluster</c> (docs/cluster.md): membership in
/// PostgreSQL through Orleans' AdoNet clustering (the tables of PostgresStateStore's schema
/// version 2), the silo named after the node, and membership timings scaled from one probe
/// timeout. No grains: ownership is the sandbox row's node, liveness is Orleans' membership.
/// </summary>
internal static class ClusterHosting
{
    public static void Add(WebApplicationBuilder builder, ClusterConfig config, ClusterNodeKey key)
    {
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = ClusterConfig.ClusterId;
                o.ServiceId = ClusterConfig.ClusterId;
            });
            silo.Configure<SiloOptions>(o => o.SiloName = config.Node);
            silo.UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = config.ConnectionString;
            });
            silo.ConfigureEndpoints(config.Address, config.SiloPort, config.GatewayPort, listenOnAnyHostAddress: false);
            silo.Configure<ClusterMembershipOptions>(o => Scale(o, config.ProbeTimeout));
        });
        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(key);
        builder.Services.AddSingleton<ClusterNode>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ClusterNode>());
        builder.Services.AddSingleton<ClusterPlacement>();
        builder.Services.AddSingleton<ClusterProxy>();
    }

    /// <summary>
    /// Orleans' defaults are for a probe timeout of 5 s; a shorter one (tests) shortens what
    /// follows from it, so a silo that stops answering is declared dead after about
    /// <c>NumMissedProbesLimit</c> probes plus a table refresh.
    /// </summary>
    private static void Scale(ClusterMembershipOptions o, TimeSpan probe)
    {
        o.ProbeTimeout = probe;
        o.NumMissedProbesLimit = 3;
        o.TableRefreshTimeout = probe * 2;
        o.IAmAliveTablePublishTimeout = probe * 6;
        o.DeathVoteExpirationTimeout = probe * 24;
        o.LocalHealthDegradationMonitoringPeriod = probe * 2;
    }
}
