using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Vessel.Service;

namespace Vessel.Cli.Serve;

/// <summary>Routes of docs/api.md, "Templates": builds run in the daemon, their log streamed.</summary>
internal static class TemplateEndpoints
{
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/templates", async (HttpContext ctx, SandboxService s) => Results.Ok(await s.ListTemplatesAsync(ctx.RequestAborted)))
            .Produces<IReadOnlyList<TemplateInfo>>();

        app.MapGet("/templates/{name}", async (string name, HttpContext ctx, SandboxService s) => Results.Ok(await s.GetTemplateAsync(name, ctx.RequestAborted)))
            .Produces<TemplateInfo>();

        app.MapDelete("/templates/{name}", async (string name, HttpContext ctx, SandboxService s) =>
        {
            await s.DeleteTemplateAsync(name, ctx.RequestAborted);
            return Results.NoContent();
        });

        app.MapPost("/templates", async (HttpContext ctx, SandboxService s) =>
        {
            string spec = await ApiIo.ReadTextAsync(ctx.Request);
            // Over TCP a spec may not read the daemon's files (COPY, a local image).
            bool local = ApiIo.IsUnixSocket(ctx);
            return Results.Accepted(null, new BuildStarted(s.StartTemplateBuild(spec, allowHostPaths: local)));
        }).Accepts<object>("application/json").Produces<BuildStarted>(StatusCodes.Status202Accepted);

        app.MapGet("/builds/{id}", (string id, SandboxService s) => Results.Ok(s.GetBuild(id))).Produces<BuildInfo>();

        app.MapGet("/builds/{id}/log", async (string id, HttpContext ctx, SandboxService s) =>
        {
            CommandOutput log = s.GetBuildLog(id);
            ctx.Response.ContentType = "text/plain; charset=utf-8";
            await foreach (CommandEvent e in log.ReadAsync(0, _ => { }, ctx.RequestAborted))
            {
                if (e.Data.Length > 0)
                {
                    await ctx.Response.Body.WriteAsync(e.Data, ctx.RequestAborted);
                    await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
                }
            }
        }).Produces(StatusCodes.Status200OK, contentType: "text/plain");
    }
}
