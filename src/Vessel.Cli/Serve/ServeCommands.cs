using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Vessel.Blocks;
using Vessel.Cli.Commands;
using Vessel.Cli.Serve.Cluster;
using Vessel.Common;
using Vessel.Guest;
using Vessel.Sandboxes;
using Vessel.Service;
using Vessel.State;

namespace Vessel.Cli.Serve;

/// <summary><c>vessel serve</c> and <c>vessel keys</c> (docs/api.md).</summary>
internal static partial class ServeCommands
{
    public static Command Serve()
    {
        var home = HomeOption.Create();
        var socket = new Option<string?>("--socket") { Description = "The unix socket (default HOME/vessel.sock, mode 0600; no API key on it)." };
        var listen = new Option<string?>("--listen") { Description = "Also listen on TCP HOST:PORT; every TCP request needs an X-API-Key (vessel keys create)." };
        var accel = new Option<string?>("--accel") { Description = "kvm or tcg for sandbox VMs (default: probe; $VESSEL_ACCEL)." };
        var cluster = new Option<bool>("--cluster") { Description = "Join the Orleans cluster of the nodes sharing VESSEL_STATE (PostgreSQL); needs --listen (docs/cluster.md)." };
        var node = new Option<string?>("--node") { Description = "This node's name: its sandbox rows name it (default: $VESSEL_NODE, else the host name)." };
        var command = new Command("serve", "Run the sandbox daemon: an HTTP API (docs/api.md) on a unix socket, optionally on TCP with API keys.")
        {
            home, socket, listen, accel, cluster, node,
        };
        return command.WithAction(async (parse, ct) =>
        {
            VesselHome dir = HomeOption.Get(parse, home);
            string socketPath = Path.GetFullPath(parse.GetValue(socket) ?? dir.Socket);
            IPEndPoint? tcp = parse.GetValue(listen) is { } l ? ParseEndPoint(l) : null;
            var serve = new ServeOptions(dir, socketPath, tcp, SandboxCommands.ParseAcceleration(parse.GetValue(accel) ?? VesselSettings.Current.Accelerator),
                parse.GetValue(node) ?? VesselSettings.Current.Node, parse.GetValue(cluster));
            return await RunAsync(serve, ct);
        });
    }

    /// <summary>VESSEL_OUTBOUND, checked before the daemon starts.</summary>
    private static Vessel.Vmm.NetworkConfig DefaultNetwork() => VesselSettings.Current.DefaultOutbound is { } outbound
        ? Vessel.Vmm.NetworkConfig.Default with { Outbound = Vessel.Vmm.NetworkConfig.ParseOutbound(outbound) }
        : Vessel.Vmm.NetworkConfig.Default;

    private sealed record ServeOptions(VesselHome Home, string Socket, IPEndPoint? Tcp, Vessel.Vmm.Acceleration Acceleration, string Node, bool Cluster);

    private static async Task<int> RunAsync(ServeOptions options, CancellationToken cancellationToken)
    {
        (VesselHome home, string socketPath, IPEndPoint? tcp) = (options.Home, options.Socket, options.Tcp);
        Directory.CreateDirectory(home.Root);
        using FileStream homeLock = LockHome(home.Root);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stop.Cancel();
        });
        StateStore state = await StateStore.OpenAsync(VesselSettings.Current.StateLocation(home), cancellationToken);
        ClusterConfig? cluster = options.Cluster ? ClusterConfig.Create(VesselSettings.Current, options.Node, state, tcp) : null;
        GuestKit kit = await KitCommands.EnsureKitAsync(cancellationToken);
        using ILoggerFactory logs = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Information));
        await using var service = new SandboxService(new SandboxServiceOptions(home) { Acceleration = options.Acceleration, Node = options.Node, Clustered = options.Cluster, DefaultNetwork = DefaultNetwork(), TestCrashPoint = VesselSettings.Current.ServiceTestCrash },
            new SandboxManager(home.Root, kit), LayerStore.OpenHome(home, VesselSettings.Current), state, logs.CreateLogger("Vessel.Service"));
        await service.StartAsync(cancellationToken);
        if (tcp is not null && (await state.ListApiKeysAsync(cancellationToken)).Count == 0)
        {
            await Console.Error.WriteLineAsync("vessel: warning: no API keys exist, so every TCP request is refused; create one with 'vessel keys create'");
        }
        ClusterNodeKey? nodeKey = cluster is null ? null : await ClusterNodeKey.CreateAsync(state, options.Node, cancellationToken);
        await using WebApplication app = Build(service, socketPath, tcp, cluster, nodeKey);
        File.Delete(socketPath); // a stale socket of a dead daemon (the home lock says none runs)
        uint previous = Umask(0x3F); // the socket is created 0600 (no window with wider permissions)
        try
        {
            await app.StartAsync(cancellationToken);
        }
        finally
        {
            Umask(previous);
        }
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        await Console.Error.WriteLineAsync($"vessel: serving on unix:{socketPath}{(tcp is null ? string.Empty : $" and http://{tcp}")} (home {home}{(cluster is null ? string.Empty : $", node {cluster.Node} of the cluster, silo {cluster.Address}:{cluster.SiloPort}")})");
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await app.StopAsync(CancellationToken.None);
        File.Delete(socketPath);
        await Console.Error.WriteLineAsync("vessel: stopped; running sandboxes were stopped, paused ones kept");
        return 0;
    }

    private static WebApplication Build(SandboxService service, string socketPath, IPEndPoint? tcp, ClusterConfig? cluster, ClusterNodeKey? nodeKey)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.ListenUnixSocket(socketPath);
            if (tcp is not null)
            {
                k.Listen(tcp);
            }
            k.Limits.MaxRequestBodySize = null; // file uploads stream; JSON bodies are capped by ApiIo
        });
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.CamelCase;
            o.SerializerOptions.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        });
        builder.Services.AddOpenApi();
        builder.Services.AddSingleton(service);
        if (cluster is not null)
        {
            ClusterHosting.Add(builder, cluster, nodeKey!);
        }
        WebApplication app = builder.Build();
        app.UseMiddleware<ApiErrors>();
        if (cluster is not null)
        {
            app.UseMiddleware<ClusterForwarding>();
        }
        app.MapOpenApi();
        SandboxEndpoints.Map(app);
        PortEndpoints.Map(app);
        FileEndpoints.Map(app);
        TemplateEndpoints.Map(app);
        return app;
    }

    private static FileStream LockHome(string home)
    {
        try
        {
            // FileShare.None takes an exclusive flock on Unix: the kernel drops it if this process dies.
            return new FileStream(Path.Combine(home, "serve.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new VesselException(VesselErrorReason.Conflict, $"Another 'vessel serve' runs on {home} ({e.Message}): one daemon per home.", e);
        }
    }

    private static IPEndPoint ParseEndPoint(string value)
    {
        string v = value.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase) ? "127.0.0.1:" + value["localhost:".Length..] : value;
        return IPEndPoint.TryParse(v, out IPEndPoint? ep) && ep.Port > 0
            ? ep
            : throw new VesselException(VesselErrorReason.InvalidInput, $"--listen: '{value}' is not HOST:PORT (an IP address and a port, e.g. 127.0.0.1:8080).");
    }

    [LibraryImport("libc", EntryPoint = "umask")]
    private static partial uint Umask(uint mask);
}
