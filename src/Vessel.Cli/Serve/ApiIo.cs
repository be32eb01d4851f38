using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Vessel.Service;

namespace Vessel.Cli.Serve;

/// <summary>Request bodies (bounded JSON with errors that say what is wrong) and NDJSON output.</summary>
internal static class ApiIo
{
    /// <summary>JSON request bodies are at most this big (docs/api.md, "Limits").</summary>
    public const int MaxJsonBody = 1 << 20;

    public static async Task<T> ReadJsonAsync<T>(HttpRequest request, bool optional = false)
        where T : class
    {
        string text = await ReadTextAsync(request);
        if (text.Length == 0 || text.Trim().Length == 0)
        {
            return optional
                ? JsonSerializer.Deserialize<T>("{}", Options(request))!
                : throw new VesselException(VesselErrorReason.InvalidInput, "The request needs a JSON body (docs/api.md).");
        }
        try
        {
            return JsonSerializer.Deserialize<T>(text, Options(request))
                ?? throw new VesselException(VesselErrorReason.InvalidInput, "The body is JSON null; an object is expected.");
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"The body is not valid JSON for this request{(e.Path is { } p ? " at " + p : string.Empty)}: {e.Message}", e);
        }
    }

    public static async Task<string> ReadTextAsync(HttpRequest request)
    {
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[16 * 1024];
        int n;
        while ((n = await request.Body.ReadAsync(chunk, request.HttpContext.RequestAborted)) > 0)
        {
            if (buffer.Length + n > MaxJsonBody)
            {
                throw new BadHttpRequestException($"The body is over {MaxJsonBody} bytes.", StatusCodes.Status413PayloadTooLarge);
            }
            buffer.Write(chunk, 0, n);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    /// <summary>True when the request came over the unix socket (reaching it is the authorization), false over TCP.</summary>
    public static bool IsUnixSocket(HttpContext context)
        // Kestrel gives a TCP connection its IP addresses and a unix-socket one none.
        => context.Connection.LocalIpAddress is null && context.Connection.RemoteIpAddress is null;

    public static JsonSerializerOptions Options(HttpRequest request)
        => request.HttpContext.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;

    /// <summary>A guest path from the query: absolute, no NUL, bounded.</summary>
    public static string GuestPath(HttpRequest request, string name = "path")
    {
        string? path = request.Query[name];
        if (string.IsNullOrEmpty(path) || path[0] != '/' || path.Length > 4096 || path.Contains('\0', StringComparison.Ordinal))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{name}: an absolute guest path is required (got '{path}').");
        }
        return path;
    }

    /// <summary>
    /// Writes command events as NDJSON lines (start first), flushing each, until the exit or error
    /// line; with <paramref name="from"/> null only the start line.
    /// </summary>
    public static async Task StreamAsync(HttpResponse response, ServiceCommand command, long? from, CancellationToken cancellationToken)
    {
        await WriteLineAsync(response, w =>
        {
            w.WriteString("type", "start");
            w.WriteNumber("pid", command.Pid);
        }, cancellationToken);
        if (from is null)
        {
            return;
        }
        long dropped = 0;
        await foreach (CommandEvent e in command.Output.ReadAsync(from.Value, d => dropped = d, cancellationToken))
        {
            if (dropped > 0)
            {
                long d = dropped;
                dropped = 0;
                await WriteLineAsync(response, w =>
                {
                    w.WriteString("type", "truncated");
                    w.WriteNumber("droppedBytes", d);
                }, cancellationToken);
            }
            await WriteLineAsync(response, w => WriteEvent(w, e), cancellationToken);
        }
    }

    private static void WriteEvent(Utf8JsonWriter w, CommandEvent e)
    {
        switch (e.Kind)
        {
            case CommandEventKind.Stdout or CommandEventKind.Stderr:
                w.WriteString("type", e.Kind == CommandEventKind.Stdout ? "stdout" : "stderr");
                w.WriteBase64String("data", e.Data);
                break;
            case CommandEventKind.Exit:
                w.WriteString("type", "exit");
                w.WriteNumber("exitCode", e.ExitCode);
                if (e.Signal != 0)
                {
                    w.WriteNumber("signal", e.Signal);
                }
                if (e.TimedOut)
                {
                    w.WriteBoolean("timedOut", true);
                }
                break;
            default:
                w.WriteString("type", "error");
                w.WriteString("message", e.Message);
                break;
        }
    }

    private static async Task WriteLineAsync(HttpResponse response, Action<Utf8JsonWriter> write, CancellationToken cancellationToken)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            write(w);
            w.WriteEndObject();
        }
        await response.Body.WriteAsync(buffer.WrittenMemory, cancellationToken);
        await response.Body.WriteAsync("\n"u8.ToArray(), cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
