using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Vessel.Common;
using Vessel.Service;
using Vessel.State;

namespace Vessel.Cli.Serve.Cluster;

/// <summary>
/// This daemon as a node of the cluster, beside its Orleans silo (docs/cluster.md): writes its
/// heartbeat row (API address, running VMs, memory left, the builds its home holds) and watches
/// Orleans' membership. When a silo is declared dead, the running sandboxes of its node are
/// marked lost (its paused rows stay: resumable elsewhere when their snapshot is in the bucket,
/// else when it comes back). Each heartbeat also releases this home's copies of paused sandboxes
/// another node has resumed.
/// </summary>
internal sealed partial class ClusterNode(ClusterConfig config, IClusterMembershipService membership, SandboxService service, ILogger<ClusterNode> logger)
    : BackgroundService
{
    private readonly HashSet<SiloAddress> _handled = [];

    public ClusterConfig Config => config;

    /// <summary>The nodes whose silo is active now (this one included once it joined).</summary>
    public IReadOnlySet<string> LiveNodes()
        => membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.Name).ToHashSet(StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        Task heartbeat = HeartbeatAsync(stoppingToken);
        try
        {
            await foreach (ClusterMembershipSnapshot snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                await JudgeAsync(snapshot);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        await heartbeat;
    }

    /// <summary>Loses the running sandboxes of each node whose silo is newly dead, unless a newer silo of that node is up (it restarted and took its rows over itself).</summary>
    private async Task JudgeAsync(ClusterMembershipSnapshot snapshot)
    {
        foreach (ClusterMember dead in snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead))
        {
            if (!_handled.Add(dead.SiloAddress) || dead.Name == config.Node
                || snapshot.Members.Values.Any(m => m.Name == dead.Name && m.Status != SiloStatus.Dead && m.SiloAddress.Generation > dead.SiloAddress.Generation))
            {
                continue;
            }
            string reason = $"its node '{dead.Name}' ({dead.SiloAddress}) was declared dead by the cluster's membership at " +
                $"{DateTimeOffset.UtcNow.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}, seen by node '{config.Node}': " +
                "a running sandbox's VM and disk live on its node, so it is gone (docs/cluster.md, \"On each failure (cluster)\").";
            try
            {
                IReadOnlyList<string> lost = await service.State.LoseRunningSandboxesOfAsync(dead.Name, reason, DateTimeOffset.UtcNow);
                NodeDead(logger, dead.Name, dead.SiloAddress.ToString(), lost.Count, string.Join(' ', lost));
            }
            catch (Exception e) when (e is VesselException or System.Data.Common.DbException)
            {
                _handled.Remove(dead.SiloAddress); // the next membership update tries again
                JudgeFailed(logger, e, dead.Name);
            }
        }
    }

    private async Task HeartbeatAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(config.HeartbeatInterval);
        do
        {
            try
            {
                // The home's own builds: those in the bucket every node can read, but slower (chunk by chunk).
                IReadOnlyList<Guid> builds = await service.LocalBuildsAsync(stoppingToken);
                await service.State.PutNodeAsync(new NodeRecord(config.Node, config.ApiUrl.ToString(), service.RunningCount, MemoryAvailable(),
                    JsonSerializer.Serialize(builds), DateTimeOffset.UtcNow), stoppingToken);
                await service.ReleaseMovedAsync(stoppingToken); // paused sandboxes another node resumed
            }
            catch (Exception e) when (e is VesselException or IOException or System.Data.Common.DbException)
            {
                HeartbeatFailed(logger, e);
            }
        }
        while (await WaitAsync(timer, stoppingToken));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken cancellationToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>MemAvailable of /proc/meminfo in bytes (0 when unreadable).</summary>
    private static long MemoryAvailable()
    {
        foreach (string line in File.ReadLines("/proc/meminfo"))
        {
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                && long.TryParse(line["MemAvailable:".Length..].Trim().Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out long kib))
            {
                return kib * 1024;
            }
        }
        return 0;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "node {Node} ({Silo}) was declared dead: {Count} running sandboxes marked lost {Ids}")]
    private static partial void NodeDead(ILogger logger, string node, string silo, int count, string ids);

    [LoggerMessage(Level = LogLevel.Error, Message = "could not mark the sandboxes of dead node {Node} lost; trying again at the next membership update")]
    private static partial void JudgeFailed(ILogger logger, Exception e, string node);

    [LoggerMessage(Level = LogLevel.Warning, Message = "could not write this node's heartbeat row")]
    private static partial void HeartbeatFailed(ILogger logger, Exception e);
}
