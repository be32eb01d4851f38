using System.Text.Json;
using Vessel.Service;
using Vessel.State;
using Vessel.Templates;

namespace Vessel.Cli.Serve.Cluster;

/// <summary>
/// Where a new sandbox runs (docs/cluster.md, "Placement"): among the live nodes (an active
/// Orleans silo and a fresh heartbeat) with the template's memory free, one whose home holds the
/// template's layer, then the one running the fewest VMs, then the one with the most memory
/// free, then this node. Null: serve the create here (a pod, a request placement cannot read, or
/// no candidate: the local create gives the error).
/// </summary>
internal sealed class ClusterPlacement(SandboxService service, ClusterConfig config)
{
    public async Task<NodeRecord?> PlaceAsync(byte[] body, IReadOnlySet<string> liveNodes, CancellationToken cancellationToken)
    {
        if (TemplateOf(body) is not { } name || await service.State.GetTemplateAsync(name, cancellationToken) is not { } template)
        {
            return null;
        }
        string layer = template.LayerBuildId.ToString();
        return Rank(await CandidatesAsync(MemoryOf(template), liveNodes, cancellationToken), n => Holds(n, layer)).FirstOrDefault();
    }

    /// <summary>
    /// Where paused sandbox <paramref name="row"/>, its snapshot in the bucket, resumes: <paramref name="asked"/>
    /// when given (it must be live with the memory), else among the live nodes with the template's
    /// memory free the one that paused it (its home holds the snapshot), then the fewest running VMs,
    /// then the most memory, then this node.
    /// </summary>
    public async Task<NodeRecord> PlaceResumeAsync(SandboxRecord row, string? asked, IReadOnlySet<string> liveNodes, CancellationToken cancellationToken)
    {
        TemplateRecord? template = await service.State.GetTemplateAsync(row.Template, cancellationToken);
        long memory = template is null ? 0 : MemoryOf(template);
        List<NodeRecord> candidates = await CandidatesAsync(memory, liveNodes, cancellationToken);
        if (asked is not null)
        {
            return candidates.FirstOrDefault(n => n.Name == asked) ?? throw new VesselException(VesselErrorReason.Unavailable,
                $"Sandbox {row.Id} cannot resume on node '{asked}': it is not a live node of the cluster with {memory >> 20} MiB free (live: {string.Join(", ", candidates.Select(n => n.Name))}).");
        }
        return Rank(candidates, n => n.Name == row.Node).FirstOrDefault() ?? throw new VesselException(VesselErrorReason.Unavailable,
            $"Sandbox {row.Id} cannot resume: no live node of the cluster has {memory >> 20} MiB free.");
    }

    private static long MemoryOf(TemplateRecord template) => (long)TemplateConfig.FromJson(template.ConfigJson, $"template '{template.Name}'").MemoryMb << 20;

    /// <summary>The live nodes (an active silo and a fresh heartbeat) with <paramref name="memory"/> bytes free.</summary>
    private async Task<List<NodeRecord>> CandidatesAsync(long memory, IReadOnlySet<string> liveNodes, CancellationToken cancellationToken)
    {
        DateTimeOffset fresh = DateTimeOffset.UtcNow - (3 * config.HeartbeatInterval) - config.ProbeTimeout;
        return (await service.State.ListNodesAsync(cancellationToken))
            .Where(n => liveNodes.Contains(n.Name) && n.UpdatedAt >= fresh && n.MemoryAvailableBytes >= memory)
            .ToList();
    }

    /// <summary>Those <paramref name="first"/> prefers, then the fewest running VMs, then the most memory, then this node.</summary>
    private IOrderedEnumerable<NodeRecord> Rank(List<NodeRecord> candidates, Func<NodeRecord, bool> first)
        => candidates
            .OrderByDescending(first)
            .ThenBy(n => n.Running)
            .ThenByDescending(n => n.MemoryAvailableBytes >> 28) // 256 MiB steps: small differences do not decide
            .ThenByDescending(n => n.Name == config.Node);

    private static bool Holds(NodeRecord node, string layer)
        => (JsonSerializer.Deserialize<List<string>>(node.BuildsJson) ?? []).Contains(layer, StringComparer.OrdinalIgnoreCase);

    /// <summary>The template a create request names (null for a pod or a body that is not a JSON object: the node serving it says what is wrong).</summary>
    private static string? TemplateOf(byte[] body)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(body);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && !doc.RootElement.TryGetProperty("containers", out _)
                && doc.RootElement.TryGetProperty("template", out JsonElement t) && t.ValueKind == JsonValueKind.String
                ? t.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
