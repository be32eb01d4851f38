using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Vessel.Agent;
using Vessel.Agent.Protocol;
using Vessel.Service;

namespace Vessel.Cli.Serve;

/// <summary>
/// Routes of docs/api.md, "Files", over the agent's file operations. Paths resolve inside the
/// guest (the agent confines them to the sandbox's root), so nothing here touches the host.
/// </summary>
internal static class FileEndpoints
{
    private const int MaxDepth = 10;
    private const int MaxListEntries = 10_000;

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/sandboxes/{id}/files", async (string id, HttpContext ctx, SandboxService s) =>
        {
            string path = ApiIo.GuestPath(ctx.Request);
            ctx.Response.ContentType = "application/octet-stream";
            await s.WithAgentAsync(id, ctx.Request.Query["container"].FirstOrDefault(), agent => agent.ReadFileAsync(path, ctx.Response.Body, ctx.RequestAborted));
        }).Produces(StatusCodes.Status200OK, contentType: "application/octet-stream");

        app.MapPut("/sandboxes/{id}/files", async (string id, HttpContext ctx, SandboxService s) =>
        {
            string path = ApiIo.GuestPath(ctx.Request);
            uint mode = 420;
            if (ctx.Request.Query["mode"].FirstOrDefault() is { } octal)
            {
                try
                {
                    mode = Convert.ToUInt32(octal, 8);
                }
                catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"mode: '{octal}' is not octal permission bits such as 644.");
                }
                if (mode > 0xFFF)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"mode: '{octal}' is more than permission bits (at most 7777).");
                }
            }
            FileEntry entry = await s.WithAgentAsync(id, ctx.Request.Query["container"].FirstOrDefault(), async agent =>
            {
                await agent.WriteFileAsync(path, ctx.Request.Body, mode, ctx.RequestAborted);
                return await agent.StatAsync(path, ctx.RequestAborted);
            });
            return Results.Ok(Info(path, entry));
        }).Accepts<byte[]>("*/*").Produces<FileEntryInfo>();

        app.MapDelete("/sandboxes/{id}/files", async (string id, HttpContext ctx, SandboxService s) =>
        {
            string path = ApiIo.GuestPath(ctx.Request);
            await s.WithAgentAsync(id, ctx.Request.Query["container"].FirstOrDefault(), async agent =>
            {
                await agent.RemoveAsync(path, recursive: true, ctx.RequestAborted);
                return 0;
            });
            return Results.NoContent();
        });

        app.MapGet("/sandboxes/{id}/files/stat", async (string id, HttpContext ctx, SandboxService s) =>
        {
            string path = ApiIo.GuestPath(ctx.Request);
            return Results.Ok(Info(path, await s.WithAgentAsync(id, ctx.Request.Query["container"].FirstOrDefault(), agent => agent.StatAsync(path, ctx.RequestAborted))));
        }).Produces<FileEntryInfo>();

        app.MapGet("/sandboxes/{id}/files/list", async (string id, HttpContext ctx, SandboxService s) =>
        {
            string path = ApiIo.GuestPath(ctx.Request);
            int depth = 1;
            if (ctx.Request.Query["depth"].FirstOrDefault() is { } d && (!int.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out depth) || depth is < 1 or > MaxDepth))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"depth: '{d}' is not a number from 1 to {MaxDepth}.");
            }
            return Results.Ok(await s.WithAgentAsync(id, ctx.Request.Query["container"].FirstOrDefault(), agent => ListAsync(agent, path, depth, ctx.RequestAborted)));
        }).Produces<IReadOnlyList<FileEntryInfo>>();

        app.MapPost("/sandboxes/{id}/files/mkdir", async (string id, HttpContext ctx, SandboxService s) =>
        {
            string path = ApiIo.GuestPath(ctx.Request);
            FileEntry entry = await s.WithAgentAsync(id, ctx.Request.Query["container"].FirstOrDefault(), async agent =>
            {
                await agent.MkdirAsync(path, 493, parents: true, ctx.RequestAborted);
                return await agent.StatAsync(path, ctx.RequestAborted);
            });
            return Results.Ok(Info(path, entry));
        }).Produces<FileEntryInfo>();

        app.MapPost("/sandboxes/{id}/files/move", async (string id, HttpContext ctx, SandboxService s) =>
        {
            MoveRequest move = await ApiIo.ReadJsonAsync<MoveRequest>(ctx.Request);
            string from = CheckPath("from", move.From);
            string to = CheckPath("to", move.To);
            FileEntry entry = await s.WithAgentAsync(id, ctx.Request.Query["container"].FirstOrDefault(), async agent =>
            {
                await agent.RenameAsync(from, to, ctx.RequestAborted);
                return await agent.StatAsync(to, ctx.RequestAborted);
            });
            return Results.Ok(Info(to, entry));
        }).Accepts<MoveRequest>("application/json").Produces<FileEntryInfo>();
    }

    private static string CheckPath(string field, string? path)
        => path is { Length: > 0 and <= 4096 } && path[0] == '/' && !path.Contains('\0', StringComparison.Ordinal)
            ? path
            : throw new VesselException(VesselErrorReason.InvalidInput, $"{field}: an absolute guest path is required (got '{path}').");

    private static async Task<List<FileEntryInfo>> ListAsync(AgentClient agent, string root, int depth, CancellationToken cancellationToken)
    {
        var result = new List<FileEntryInfo>();
        var pending = new Queue<(string Path, int Level)>();
        pending.Enqueue((root, 1));
        while (pending.TryDequeue(out (string Path, int Level) dir))
        {
            foreach (FileEntry e in await agent.ListAsync(dir.Path, cancellationToken))
            {
                string path = dir.Path.TrimEnd('/') + "/" + e.Name;
                result.Add(Info(path, e));
                if (result.Count > MaxListEntries)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"{root} holds more than {MaxListEntries} entries at depth {depth}: list a smaller tree.");
                }
                // Symlinks are described, never followed.
                if (e.Kind == FileKind.Directory && dir.Level < depth)
                {
                    pending.Enqueue((path, dir.Level + 1));
                }
            }
        }
        return result;
    }

    private static FileEntryInfo Info(string path, FileEntry e) => new(
        e.Name.Length > 0 ? e.Name : Path.GetFileName(path.TrimEnd('/')),
        path,
        e.Kind switch
        {
            FileKind.File => "file",
            FileKind.Directory => "dir",
            FileKind.Symlink => "symlink",
            _ => "other",
        },
        (long)e.Size,
        (int)(e.Mode & 0xFFF),
        $"{e.Uid}:{e.Gid}",
        DateTimeOffset.FromUnixTimeMilliseconds(e.ModifiedUnixMilliseconds).UtcDateTime,
        e.Kind == FileKind.Symlink ? e.LinkTarget : null);
}
