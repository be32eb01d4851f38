using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Vessel.Service;

namespace Vessel.Cli.Serve;

/// <summary>Routes of docs/api.md, "Sandboxes" and "Commands".</summary>
internal static class SandboxEndpoints
{
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/sandboxes", async (HttpContext ctx, SandboxService s) =>
        {
            SandboxInfo info = await s.CreateAsync(await ApiIo.ReadJsonAsync<CreateSandboxRequest>(ctx.Request), ctx.RequestAborted);
            return Results.Created($"/sandboxes/{info.SandboxId}", info);
        }).Accepts<CreateSandboxRequest>("application/json").Produces<SandboxInfo>(StatusCodes.Status201Created);

        app.MapGet("/sandboxes", async (HttpContext ctx, SandboxService s) =>
        {
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach ((string key, Microsoft.Extensions.Primitives.StringValues value) in ctx.Request.Query)
            {
                if (key.StartsWith("metadata.", StringComparison.Ordinal) && key.Length > "metadata.".Length)
                {
                    metadata[key["metadata.".Length..]] = value.ToString();
                }
            }
            return Results.Ok(await s.ListAsync(ctx.Request.Query["state"].FirstOrDefault(), metadata, ctx.RequestAborted));
        }).Produces<IReadOnlyList<SandboxInfo>>();

        app.MapGet("/sandboxes/{id}", async (string id, HttpContext ctx, SandboxService s) => Results.Ok(await s.GetAsync(id, ctx.RequestAborted))).Produces<SandboxInfo>();

        app.MapDelete("/sandboxes/{id}", async (string id, SandboxService s) =>
        {
            await s.DeleteAsync(id, "deleted through the API");
            return Results.NoContent();
        });

        app.MapPost("/sandboxes/{id}/timeout", async (string id, HttpContext ctx, SandboxService s) =>
            Results.Ok(await s.SetTimeoutAsync(id, (await ApiIo.ReadJsonAsync<TimeoutRequest>(ctx.Request)).TimeoutSeconds, ctx.RequestAborted)))
            .Accepts<TimeoutRequest>("application/json").Produces<SandboxInfo>();

        app.MapPost("/sandboxes/{id}/pause", async (string id, HttpContext ctx, SandboxService s) => Results.Ok(await s.PauseAsync(id, ctx.RequestAborted)))
            .Produces<SandboxInfo>();

        app.MapPost("/sandboxes/{id}/resume", async (string id, HttpContext ctx, SandboxService s) =>
            Results.Ok(await s.ResumeAsync(id, (await ApiIo.ReadJsonAsync<ResumeRequest>(ctx.Request, optional: true)).TimeoutSeconds, ctx.RequestAborted)))
            .Accepts<ResumeRequest>("application/json").Produces<SandboxInfo>();

        MapCommands(app);
    }

    private static void MapCommands(IEndpointRouteBuilder app)
    {
        app.MapPost("/sandboxes/{id}/commands", async (string id, HttpContext ctx, SandboxService s) =>
        {
            CommandRequest request = await ApiIo.ReadJsonAsync<CommandRequest>(ctx.Request);
            (ServiceCommand command, IDisposable? operation) = await s.StartCommandAsync(id, request, ctx.RequestAborted);
            try
            {
                ctx.Response.StatusCode = StatusCodes.Status200OK;
                ctx.Response.ContentType = "application/x-ndjson";
                // Background: the response ends after the start line.
                await ApiIo.StreamAsync(ctx.Response, command, operation is null ? null : 0, ctx.RequestAborted);
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested && operation is not null)
            {
                // The client hung up on a foreground command: do not leave it running.
                try
                {
                    await command.SignalAsync(9, CancellationToken.None);
                }
                catch (Exception e) when (e is VesselException or IOException)
                {
                }
            }
            finally
            {
                operation?.Dispose();
            }
        }).Accepts<CommandRequest>("application/json").Produces(StatusCodes.Status200OK, contentType: "application/x-ndjson");

        app.MapGet("/sandboxes/{id}/commands", (string id, SandboxService s) => Results.Ok(s.ListCommands(id))).Produces<IReadOnlyList<CommandInfo>>();

        app.MapPost("/sandboxes/{id}/commands/{pid:int}/stdin", async (string id, int pid, HttpContext ctx, SandboxService s) =>
        {
            bool close = string.Equals(ctx.Request.Query["close"], "true", StringComparison.OrdinalIgnoreCase);
            await s.WriteStdinAsync(id, pid, ctx.Request.Body, close, ctx.RequestAborted);
            return Results.NoContent();
        }).Accepts<byte[]>("*/*");

        app.MapPost("/sandboxes/{id}/commands/{pid:int}/signal", async (string id, int pid, HttpContext ctx, SandboxService s) =>
        {
            await s.SignalAsync(id, pid, (await ApiIo.ReadJsonAsync<SignalRequest>(ctx.Request)).Signal, ctx.RequestAborted);
            return Results.NoContent();
        }).Accepts<SignalRequest>("application/json");

        app.MapGet("/sandboxes/{id}/commands/{pid:int}/output", async (string id, int pid, HttpContext ctx, SandboxService s) =>
        {
            string from = ctx.Request.Query["from"].FirstOrDefault() ?? "start";
            if (from is not ("start" or "now"))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"from: '{from}' is not start or now.");
            }
            ServiceCommand command = s.GetCommand(id, pid);
            ctx.Response.StatusCode = StatusCodes.Status200OK;
            ctx.Response.ContentType = "application/x-ndjson";
            await ApiIo.StreamAsync(ctx.Response, command, from == "start" ? 0 : command.Output.Next, ctx.RequestAborted);
        }).Produces(StatusCodes.Status200OK, contentType: "application/x-ndjson");
    }
}
