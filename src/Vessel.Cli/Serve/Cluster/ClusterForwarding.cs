using Microsoft.AspNetCore.Http;
using Vessel.Common;
using Vessel.Service;
using Vessel.State;

namespace Vessel.Cli.Serve.Cluster;

/// <summary>
/// Any node answers for any sandbox (docs/cluster.md, "Forwarding"): a request for a sandbox
/// another node owns (its row names that node) is passed to the owner's API as a streaming
/// reverse proxy, and a create goes to the node <see cref="ClusterPlacement"/> picks. A forwarded
/// request carries <see cref="ForwardedHeader"/> and is always served where it lands (no loops).
/// Runs after <see cref="ApiErrors"/>, so a request is authenticated here before it travels.
/// </summary>
internal sealed class ClusterForwarding(RequestDelegate next, SandboxService service, ClusterNode node, ClusterPlacement placement, ClusterProxy proxy)
{
    /// <summary>Set on a forwarded request: the node that forwarded it.</summary>
    public const string ForwardedHeader = "X-Vessel-Forwarded-By";

    /// <summary>Set on every answer of a cluster node: the node that served the request.</summary>
    public const string ServedByHeader = "X-Vessel-Node";

    /// <summary>The largest create body placement reads (JSON; the real cap is ApiIo's on the node that serves it).</summary>
    private const int MaxCreateBody = 1 << 20;

    public async Task InvokeAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        if (request.Headers.ContainsKey(ForwardedHeader))
        {
            context.Response.Headers[ServedByHeader] = service.Node;
            await next(context);
            return;
        }
        string[] segments = request.Path.Value?.Split('/', StringSplitOptions.RemoveEmptyEntries) ?? [];
        if (segments is ["sandboxes"] && HttpMethods.IsPost(request.Method))
        {
            await CreateAsync(context);
            return;
        }
        if (segments is ["sandboxes", string resumed, "resume"] && HttpMethods.IsPost(request.Method))
        {
            await ResumeAsync(context, resumed);
            return;
        }
        if (segments is ["sandboxes", string id] && HttpMethods.IsGet(request.Method) && !service.Serves(id)
            && await service.State.GetSandboxAsync(id, context.RequestAborted) is { State: "paused" } paused && !node.LiveNodes().Contains(paused.Node))
        {
            // Its node is dead (or gone): the row says all there is, and the sandbox is still paused (resumable elsewhere when its snapshot is in the bucket).
            context.Response.Headers[ServedByHeader] = service.Node;
            await Results.Ok(SandboxService.InfoOf(paused)).ExecuteAsync(context);
            return;
        }
        if (segments is ["sandboxes", string target, ..] && !service.Serves(target) && await OwnerAsync(target, context.RequestAborted) is { } owner)
        {
            await proxy.ForwardAsync(context, owner, body: null);
            return;
        }
        context.Response.Headers[ServedByHeader] = service.Node;
        await next(context);
    }

    /// <summary>The node row of the sandbox's owner when another node owns it; throws the lost sandbox's 404 when a node lost it; null: serve here.</summary>
    private async Task<NodeRecord?> OwnerAsync(string id, CancellationToken cancellationToken)
    {
        SandboxRecord? row = await service.State.GetSandboxAsync(id, cancellationToken);
        if (row is null)
        {
            return await service.State.GetLostSandboxAsync(id, cancellationToken) is { } lost ? throw SandboxService.Lost(lost) : null;
        }
        if (row.Node.Length == 0 || row.Node == service.Node)
        {
            return null;
        }
        NodeRecord? owner = (await service.State.ListNodesAsync(cancellationToken)).FirstOrDefault(n => n.Name == row.Node);
        return owner ?? throw new VesselException(VesselErrorReason.Unavailable,
            $"Sandbox {id} runs on node '{row.Node}', which has never written its heartbeat row: its API address is unknown (docs/cluster.md).");
    }

    private async Task CreateAsync(HttpContext context)
    {
        byte[] body = await ReadBodyAsync(context.Request, context.RequestAborted);
        NodeRecord? target = await placement.PlaceAsync(body, node.LiveNodes(), context.RequestAborted);
        await ServeHereOrForwardAsync(context, target, body);
    }

    /// <summary>
    /// A resume goes where <see cref="ClusterPlacement.PlaceResumeAsync"/> says when the snapshot is
    /// in the bucket (the node that paused it if it is live, else another; or the node the request
    /// names); otherwise to the owner, as every request.
    /// </summary>
    private async Task ResumeAsync(HttpContext context, string id)
    {
        byte[] body = await ReadBodyAsync(context.Request, context.RequestAborted);
        string? asked = NodeOf(body);
        SandboxRecord? row = await service.State.GetSandboxAsync(id, context.RequestAborted);
        NodeRecord? target = row is { State: "paused", RemoteSnapshot: not null }
            ? await placement.PlaceResumeAsync(row, asked, node.LiveNodes(), context.RequestAborted)
            : service.Serves(id) ? null : await OwnerAsync(id, context.RequestAborted);
        await ServeHereOrForwardAsync(context, target, body);
    }

    /// <summary>A request whose body was read for placement: served here (the body replayed) when <paramref name="target"/> is this node or none, else forwarded.</summary>
    private async Task ServeHereOrForwardAsync(HttpContext context, NodeRecord? target, byte[] body)
    {
        if (target is null || target.Name == service.Node)
        {
            context.Request.Body = new MemoryStream(body, writable: false);
            context.Response.Headers[ServedByHeader] = service.Node;
            await next(context);
            return;
        }
        await proxy.ForwardAsync(context, target, body);
    }

    /// <summary>The node a resume request names (null: none, or a body the serving node will refuse).</summary>
    private static string? NodeOf(byte[] body)
    {
        try
        {
            using System.Text.Json.JsonDocument doc = System.Text.Json.JsonDocument.Parse(body.Length == 0 ? "{}"u8.ToArray() : body);
            return doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && doc.RootElement.TryGetProperty("node", out System.Text.Json.JsonElement n)
                && n.ValueKind == System.Text.Json.JsonValueKind.String ? n.GetString() : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[16384];
        int n;
        while ((n = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            buffer.Write(chunk, 0, n);
            if (buffer.Length > MaxCreateBody)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"The create request's body is over {MaxCreateBody} bytes.");
            }
        }
        return buffer.ToArray();
    }
}
