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
        long memory = (long)TemplateConfig.FromJson(template.ConfigJson, $"template '{template.Name}'").MemoryMb << 20;
        string layer = template.LayerBuildId.ToString();
        DateTimeOffset fresh = DateTimeOffset.UtcNow - (3 * config.HeartbeatInterval) - config.ProbeTimeout;
        return (await service.State.ListNodesAsync(cancellationToken))
            .Where(n => liveNodes.Contains(n.Name) && n.UpdatedAt >= fresh && n.MemoryAvailableBytes >= memory)
            .OrderByDescending(n => Holds(n, layer))
            .ThenBy(n => n.Running)
            .ThenByDescending(n => n.MemoryAvailableBytes >> 28) // 256 MiB steps: small differences do not decide
            .ThenByDescending(n => n.Name == config.Node)
            .FirstOrDefault();
    }

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
