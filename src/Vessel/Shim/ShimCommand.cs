using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Vessel.Common;
using Vessel.Containerd.Api.Task;
using Vessel.Containerd.Ttrpc;
using Vessel.Sandboxes;

namespace Vessel.Shim;

/// <summary>
/// <c>containerd-shim-vessel-v1</c>: containerd's runtime v2 shim contract (core/runtime/v2/README.md).
/// <c>start</c> (the bundle is the working directory) starts the long-lived shim in its own
/// session, waits until it listens on its ttrpc socket and prints the address,
/// <c>unix:///run/containerd/s/SHA256(address/namespace/id)</c>, as containerd's own shims name
/// it. <c>delete</c> cleans a bundle after the shim died and prints a DeleteResponse.
/// <c>-v</c> prints the version.
/// </summary>
internal static class ShimCommand
{
    public const string BinaryName = "containerd-shim-vessel-v1";

    /// <summary>Where containerd's shims put their sockets (containerd's runtime/v2/shim socketRoot, "s").</summary>
    public const string SocketDirectory = "/run/containerd/s";

    public static async Task<int> RunAsync(string[] args)
    {
        try
        {
            ShimArguments arguments = ShimArguments.Parse(args);
            if (arguments.Version)
            {
                Console.WriteLine($"{BinaryName}:\n  Version:  {typeof(ShimCommand).Assembly.GetName().Version}\n  Runtime:  io.containerd.vessel.v1 (task API v2 over ttrpc)");
                return 0;
            }
            if (arguments.Id.Length == 0 || arguments.Namespace.Length == 0)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "-id and -namespace are required (containerd passes them)");
            }
            return arguments.Action switch
            {
                "start" => await StartAsync(arguments),
                "delete" => await DeleteAsync(arguments),
                "serve" => await ServeAsync(arguments),
                _ => throw new VesselException(VesselErrorReason.InvalidInput, $"unknown action '{arguments.Action}' (start, delete or -v)"),
            };
        }
        catch (Exception e) when (e is VesselException or IOException or SocketException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"{BinaryName}: {e.Message}");
            return 1;
        }
    }

    /// <summary>The socket of a shim: a hash of containerd's address, the namespace and the id, as containerd's shims compute it.</summary>
    public static string SocketPath(string address, string ns, string id)
    {
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(Path.Join(address, ns, id)));
        return Path.Combine(SocketDirectory, Convert.ToHexStringLower(hash));
    }

    private static async Task<int> StartAsync(ShimArguments arguments)
    {
        string bundle = arguments.Bundle ?? Directory.GetCurrentDirectory();
        string socket = SocketPath(arguments.Address, arguments.Namespace, arguments.Id);
        Directory.CreateDirectory(SocketDirectory);
        if (File.Exists(socket))
        {
            if (await CanConnectAsync(socket))
            {
                throw new VesselException(VesselErrorReason.Conflict, $"a shim for {arguments.Namespace}/{arguments.Id} already listens on {socket}");
            }
            File.Delete(socket); // a dead shim's
        }
        using Process shim = SpawnServe(arguments with { Bundle = bundle, Socket = socket }, bundle);
        Task<string> stderr = shim.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        while (!await CanConnectAsync(socket))
        {
            if (shim.HasExited)
            {
                throw new VesselException(VesselErrorReason.Unavailable, $"the shim exited with {shim.ExitCode} before listening: {(await stderr).Trim()}");
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(30))
            {
                shim.Kill(entireProcessTree: true);
                throw new VesselException(VesselErrorReason.Timeout, $"the shim did not listen on {socket} within 30 s");
            }
            await Task.Delay(20);
        }
        string address = "unix://" + socket;
        await File.WriteAllTextAsync(Path.Combine(bundle, "address"), address);
        Console.Out.Write(address);
        await Console.Out.FlushAsync();
        return 0;
    }

    /// <summary>
    /// The long-lived shim, in a session of its own (setsid) so that signals to containerd's
    /// process group do not reach it; its stdio are pipes of this process, which it never
    /// writes once it listens (it logs to the bundle's log FIFO).
    /// </summary>
    private static Process SpawnServe(ShimArguments arguments, string bundle)
    {
        var psi = new ProcessStartInfo(ExternalProcess.ResolveTool("setsid"))
        {
            WorkingDirectory = bundle,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string self = Environment.ProcessPath ?? throw new VesselException(VesselErrorReason.Unavailable, "cannot find the shim's own executable");
        psi.ArgumentList.Add(self);
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(ShimCommand).Assembly.Location.Replace("Vessel.dll", BinaryName + ".dll", StringComparison.Ordinal));
        }
        foreach (string a in arguments.ToFlags())
        {
            psi.ArgumentList.Add(a);
        }
        psi.ArgumentList.Add("serve");
        Process process = Process.Start(psi)!;
        process.StandardInput.Close();
        return process;
    }

    private static async Task<bool> CanConnectAsync(string socket)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await s.ConnectAsync(new UnixDomainSocketEndPoint(socket));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static async Task<int> ServeAsync(ShimArguments arguments)
    {
        string bundle = arguments.Bundle ?? Directory.GetCurrentDirectory();
        string socket = arguments.Socket ?? SocketPath(arguments.Address, arguments.Namespace, arguments.Id);
        using ShimLog log = ShimLog.Open(bundle, arguments.Debug);
        await using var events = new ShimEvents(arguments, Environment.GetEnvironmentVariable("TTRPC_ADDRESS"), log);
        var service = new TaskService(events, VesselSettings.Current.Home.Root, arguments.Address, arguments.Namespace, log);
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            service.RequestShutdown();
        });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            c.Cancel = true;
            service.RequestShutdown();
        });
        await using (var server = new TtrpcServer(socket, log))
        {
            service.Register(server);
            server.Start();
            await service.ShutdownRequested;
            // Let the Shutdown call's response reach containerd before the socket closes.
            await Task.Delay(50);
            await service.DisposeAsync();
        }
        return 0;
    }

    /// <summary>
    /// containerd's cleanup after a shim died (or never answered): the dead shim's VM (swept
    /// by its owner stamp: only sandboxes whose owner process is gone), the boot artifacts' binds,
    /// view and lease, the rootfs mount, the image, the state file and the socket. Prints a DeleteResponse (SIGKILL status) on stdout.
    /// </summary>
    private static async Task<int> DeleteAsync(ShimArguments arguments)
    {
        string bundle = arguments.Bundle ?? Directory.GetCurrentDirectory();
        ShimState? state = ShimState.Read(bundle);
        if (state?.Home is { } home)
        {
            await SandboxManager.SweepDirectoryAsync(home, CancellationToken.None);
        }
        await TaskService.CleanupAsync(bundle);
        File.Delete(SocketPath(arguments.Address, arguments.Namespace, arguments.Id));
        var response = new DeleteResponse { ExitStatus = 128 + 9, ExitedAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
        using Stream stdout = Console.OpenStandardOutput();
        response.WriteTo(stdout);
        return 0;
    }
}
