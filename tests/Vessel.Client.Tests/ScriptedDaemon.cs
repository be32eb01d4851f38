using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;

namespace Vessel.Client.Tests;

/// <summary>
/// A real Kestrel server on a unix socket (or TCP) in a temporary directory that answers the
/// daemon's routes with a script the test writes: it can send exactly the bytes of the contract,
/// and the faults a real daemon cannot be made to produce (dying mid-stream, stalling). Tests of
/// the real daemon live in the integration tests.
/// </summary>
internal sealed class ScriptedDaemon : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _directory;

    private ScriptedDaemon(WebApplication app, string directory, string? socketPath, Uri? baseAddress)
    {
        _app = app;
        _directory = directory;
        SocketPath = socketPath;
        BaseAddress = baseAddress;
    }

    public string? SocketPath { get; }

    public Uri? BaseAddress { get; }

    public static Task<ScriptedDaemon> StartAsync(RequestDelegate handler) => StartAsync(handler, tcp: false);

    public static async Task<ScriptedDaemon> StartAsync(RequestDelegate handler, bool tcp)
    {
        string directory = Directory.CreateTempSubdirectory("vessel-client-test-").FullName;
        string? socket = tcp ? null : Path.Combine(directory, "vessel.sock");
        int port = tcp ? FreePort() : 0;
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            if (socket is null)
            {
                k.Listen(IPAddress.Loopback, port);
            }
            else
            {
                k.ListenUnixSocket(socket);
            }
        });
        WebApplication app = builder.Build();
        app.Run(handler);
        await app.StartAsync();
        return new ScriptedDaemon(app, directory, socket, tcp ? new Uri($"http://127.0.0.1:{port}") : null);
    }

    public VesselClient CreateClient(TimeSpan? requestTimeout = null) => new(SocketPath is string s
        ? new VesselClientOptions { SocketPath = s, RequestTimeout = requestTimeout ?? TimeSpan.FromSeconds(30) }
        : new VesselClientOptions { BaseAddress = BaseAddress!, ApiKey = "k3y", RequestTimeout = requestTimeout ?? TimeSpan.FromSeconds(30) });

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static async Task JsonAsync(HttpContext context, int status, string json)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = status >= 400 ? "application/problem+json" : "application/json";
        await context.Response.WriteAsync(json);
    }

    public static Task SandboxAsync(HttpContext context, string id, string state = "running", int status = 200)
        => JsonAsync(context, status, $$$"""{"sandboxId":"{{{id}}}","template":"web","state":"{{{state}}}","startedAt":"2026-12-06T15:00:00Z","endAt":"2026-12-06T15:05:00Z","metadata":{"owner":"me"}}""");

    /// <summary>Serves <c>GET /sandboxes/sb</c> (a running sandbox) and passes every other request to <paramref name="handler"/>.</summary>
    public static RequestDelegate WithSandbox(RequestDelegate handler) => context =>
        context.Request.Method == "GET" && context.Request.Path.Value == "/sandboxes/sb" ? SandboxAsync(context, "sb") : handler(context);

    public static Task ProblemAsync(HttpContext context, int status, string title, string detail)
        => JsonAsync(context, status, JsonSerializer.Serialize(new Dictionary<string, object> { ["type"] = "about:blank", ["title"] = title, ["status"] = status, ["detail"] = detail }));

    /// <summary>Starts an NDJSON response and flushes its headers.</summary>
    public static async Task BeginEventsAsync(HttpContext context)
    {
        context.Response.ContentType = "application/x-ndjson";
        await context.Response.StartAsync();
    }

    /// <summary>Writes one NDJSON event and flushes it, as the daemon streams output.</summary>
    public static async Task EventAsync(HttpContext context, string json)
    {
        await context.Response.WriteAsync(json + "\n");
        await context.Response.Body.FlushAsync();
    }

    public static string Data(string type, string text) => $$"""{"type":"{{type}}","data":"{{Convert.ToBase64String(Encoding.UTF8.GetBytes(text))}}"}""";

    public static async Task<string> BodyAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        return await reader.ReadToEndAsync();
    }
}
