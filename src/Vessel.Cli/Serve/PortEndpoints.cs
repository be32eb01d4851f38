using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Vessel.Service;

namespace Vessel.Cli.Serve;

/// <summary>Routes of docs/api.md, "Ports": a guest port made reachable from the host.</summary>
internal static class PortEndpoints
{
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/sandboxes/{id}/ports/{port:int}", async (string id, int port, HttpContext ctx, SandboxService s) =>
            Results.Ok(await s.ForwardPortAsync(id, port, ctx.RequestAborted)))
            .Produces<PortInfo>();

        app.MapGet("/sandboxes/{id}/ports", (string id, SandboxService s) => Results.Ok(s.ListPorts(id)))
            .Produces<IReadOnlyList<PortInfo>>();
    }
}
