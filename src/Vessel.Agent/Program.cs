using System.Globalization;
using Vessel.Agent.Protocol;

namespace Vessel.Agent;

/// <summary>
/// The in-guest agent. Started by the initramfs's /init after the modules are loaded and the
/// rootfs is mounted; serves the host on the virtio-serial port until asked to shut down.
/// On the host, tests run it with --listen-unix to exercise the same code without a VM.
/// </summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == ContainerInit.Flag)
        {
            // A pod container's first process: sets up its namespaces' mounts and execs its command.
            return ContainerInit.Run(args);
        }
        if (args.Length > 0 && args[0] == TerminalExec.Flag)
        {
            // A process on a pseudo-terminal: attaches it as the controlling terminal and execs the command.
            return TerminalExec.Run(args);
        }
        string root = "/mnt/root";
        string? listen = null;
        string? token = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--root" when i + 1 < args.Length:
                    root = args[++i];
                    break;
                case "--listen-unix" when i + 1 < args.Length:
                    listen = args[++i];
                    break;
                case "--token" when i + 1 < args.Length:
                    token = args[++i];
                    break;
                default:
                    await Console.Error.WriteLineAsync($"vessel-agent: unknown argument '{args[i]}'. Usage: vessel-agent [--root DIR] [--listen-unix PATH] [--token T]");
                    return 2;
            }
        }
        token ??= Environment.GetEnvironmentVariable("VESSEL_TOKEN") ?? TokenFromCommandLine();
        if (string.IsNullOrEmpty(token))
        {
            await Console.Error.WriteLineAsync($"vessel-agent: no token: pass --token or {AgentProtocol.TokenParameter}= on the kernel command line");
            return 2;
        }

        AgentProcess.WarmUp();
        var server = new AgentServer(root, token, ProcessStartUptimeMilliseconds());
        IAgentTransport transport;
        if (listen is not null)
        {
            transport = new UnixSocketTransport(listen);
        }
        else
        {
            VirtioPortTransport port = VirtioPortTransport.Open(AgentProtocol.PortName, TimeSpan.FromSeconds(30));
            transport = port;
            Console.Error.WriteLine($"vessel-agent: serving on {port.Device} (up {AgentServer.UptimeMilliseconds()} ms)");
            // Tells init that a later non-zero exit is a crash, not a failed start (Vessel.Guest.InitScript).
            File.WriteAllBytes("/tmp/.vessel-agent-serving", []);
        }
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        await server.ServeAsync(transport, stop.Token);
        server.KillAll();
        (transport as IDisposable)?.Dispose();
        return 0;
    }

    private static string? TokenFromCommandLine()
    {
        try
        {
            string prefix = AgentProtocol.TokenParameter + "=";
            return File.ReadAllText("/proc/cmdline").Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .FirstOrDefault(a => a.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..];
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>When this process started, in ms since boot (/proc/self/stat field 22, in clock ticks of 10 ms).</summary>
    private static ulong ProcessStartUptimeMilliseconds()
    {
        try
        {
            string stat = File.ReadAllText("/proc/self/stat");
            string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return ulong.Parse(rest[19], CultureInfo.InvariantCulture) * 10;
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
