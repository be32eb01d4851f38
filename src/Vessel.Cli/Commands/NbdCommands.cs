using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Nbd;

namespace Vessel.Cli.Commands;

internal static class NbdCommands
{
    public static Command Create() => new Command("nbd", "Serve disk images and builds over NBD.")
        .WithSubcommands(Serve());

    private static Command Serve()
    {
        var source = new Argument<string>("source") { Description = "An image file to serve, or a build id (or unique prefix) from the block store." };
        var socket = new Option<string?>("--socket") { Description = "Unix socket path to listen on; clients use nbd+unix:///NAME?socket=PATH." };
        var tcp = new Option<string?>("--tcp") { Description = "Loopback TCP address to listen on, e.g. 127.0.0.1:10809 (port 0 picks one)." };
        var readOnly = new Option<bool>("--read-only") { Description = "Refuse writes (builds are always read-only unless --overlay is given)." };
        var overlay = new Option<bool>("--overlay") { Description = "Serve a build writable through a copy-on-write overlay; on exit its writes are stored as a new build, whose id is printed." };
        var name = new Option<string>("--name") { Description = "Export name (default: the empty, default export).", DefaultValueFactory = _ => string.Empty };
        var store = BlocksCommands.StoreOption();
        var verbose = new Option<bool>("--verbose") { Description = "Log connections and refused requests to stderr." };
        var socketMode = new Option<UnixFileMode>("--socket-mode")
        {
            Description = "Permissions of the unix socket in octal (default 0600: the owner only; e.g. 0660 lets the group connect).",
            DefaultValueFactory = _ => UnixFileMode.UserRead | UnixFileMode.UserWrite,
            CustomParser = result =>
            {
                string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : string.Empty;
                if (text.Length is > 0 and <= 4 && text.All(c => c is >= '0' and <= '7'))
                {
                    return (UnixFileMode)Convert.ToInt32(text, 8) & (UnixFileMode)0x1FF;
                }
                result.AddError($"--socket-mode expects octal permissions such as 0600 or 0660 (got '{text}')");
                return default;
            },
        };
        var command = new Command("serve",
            "Serve an image file or a build over NBD until interrupted (Ctrl+C or SIGTERM).")
        {
            source, socket, tcp, readOnly, overlay, name, store, verbose, socketMode,
        };
        return command.WithAction(async (parse, ct) =>
        {
            string? socketPath = parse.GetValue(socket);
            string? tcpText = parse.GetValue(tcp);
            if (socketPath is null && tcpText is null)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "give --socket PATH, --tcp 127.0.0.1:PORT, or both.");
            }
            IPEndPoint? endPoint = null;
            if (tcpText is not null && !IPEndPoint.TryParse(tcpText, out endPoint))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"--tcp '{tcpText}' is not an address:port such as 127.0.0.1:10809 or [::1]:10809.");
            }
            using ILoggerFactory logging = LoggerFactory.Create(b => b
                .AddSimpleConsole(o => o.SingleLine = true)
                .AddFilter(level => level >= (parse.GetValue(verbose) ? LogLevel.Debug : LogLevel.Warning)));
            return await ServeAsync(parse.GetValue(source)!, socketPath, parse.GetValue(socketMode), endPoint, parse.GetValue(readOnly), parse.GetValue(overlay),
                parse.GetValue(name)!, parse.GetValue(store)!, logging, ct);
        });
    }

    private static async Task<int> ServeAsync(string source, string? socketPath, UnixFileMode socketMode, IPEndPoint? endPoint, bool readOnly, bool useOverlay,
        string name, string storePath, ILoggerFactory logging, CancellationToken ct)
    {
        // Stop on SIGTERM as on Ctrl+C: a clean shutdown removes the socket and exports the overlay.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stop.Cancel();
        });

        IBlockDevice device;
        IDisposable? owned;
        LayerStore? layers = null;
        OverlayDevice? cow = null;
        string what;
        if (File.Exists(source))
        {
            if (useOverlay)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "--overlay works on builds; import the image first with 'vessel blocks import'.");
            }
            var file = FlatFileDevice.Open(source, readOnly);
            device = file;
            owned = file;
            what = $"file {Path.GetFullPath(source)}";
        }
        else
        {
            layers = BlocksCommands.OpenStore(storePath);
            Guid id = await layers.ResolveAsync(source, ct);
            Build build = await layers.OpenAsync(id, ct);
            if (useOverlay && !readOnly)
            {
                cow = OverlayDevice.Create(build, BlocksCommands.StagingFor(storePath), ownsBase: true);
                device = cow;
                owned = cow;
                what = $"overlay over build {id}";
            }
            else
            {
                device = build;
                owned = build;
                what = $"build {id}";
            }
        }
        try
        {
            await using (var server = new NbdServer(new NbdServerOptions { UnixSocketPath = socketPath, UnixSocketMode = socketMode, TcpEndPoint = endPoint }, logging))
            {
                server.AddExport(name, device, readOnly, what);
                await server.StartAsync(ct);
                string mode = readOnly || device.IsReadOnly ? "read-only" : "writable";
                if (socketPath is not null)
                {
                    Console.WriteLine($"serving {what} ({ByteSize.Format(device.Size)}, {mode}) at nbd+unix:///{Uri.EscapeDataString(name)}?socket={Path.GetFullPath(socketPath)}");
                }
                if (server.TcpEndPoint is { } ep)
                {
                    Console.WriteLine($"serving {what} ({ByteSize.Format(device.Size)}, {mode}) at nbd://{ep}/{Uri.EscapeDataString(name)}");
                }
                try
                {
                    await Task.Delay(Timeout.Infinite, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    await Console.Error.WriteLineAsync("vessel: stopping the NBD server");
                }
            }
            if (cow is not null && layers is not null)
            {
                if (cow.DirtyBlocks == 0)
                {
                    await Console.Error.WriteLineAsync("no writes: nothing to export");
                }
                else
                {
                    BuildHeader header = await cow.ExportAsync(layers, null, CancellationToken.None);
                    await Console.Error.WriteLineAsync($"exported the overlay's writes ({ByteSize.Format(header.DataLength)}) as generation {header.Generation}:");
                    Console.WriteLine(header.BuildId);
                }
            }
            return 0;
        }
        finally
        {
            owned?.Dispose();
        }
    }
}
