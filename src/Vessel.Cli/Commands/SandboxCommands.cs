using System.CommandLine;
using System.Globalization;
using Vessel.Agent;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Guest;
using Vessel.Oci;
using Vessel.Rootfs;
using Vessel.Sandboxes;
using Vessel.State;
using Vessel.Vmm;

namespace Vessel.Cli.Commands;

internal static class SandboxCommands
{
    public static Command Create()
    {
        // After run and sweep, the daemon's sandboxes (vessel serve), through the SDK.
        return new Command("sandbox", "Run commands in microVM sandboxes.")
            .WithSubcommands([CreateRun(), CreateSweep(), .. SandboxClientCommands.Create()]);
    }

    private static Command CreateRun()
    {
        var source = new Argument<string>("source")
        {
            Description = "An ext4 rootfs image (e.g. from 'vessel rootfs build'), or an image: a rootfs tarball, oci:DIR[:TAG], docker-archive:FILE, docker://REF "
                + "(docs/formats/image-sources.md), built into a rootfs cached by its content digest in the home's images/. The sandbox boots a copy; the original is not changed.",
        };
        var exec = new ExecOptions("KEY=VALUE for the command's environment (repeatable).", "inside the rootfs; default /",
            "User (name or uid[:gid]) from the rootfs's /etc/passwd (default root).");
        var memory = new Option<string>("--memory", "-m") { Description = $"Guest memory (default {Vessel.Vmm.VmConfig.DefaultMemoryMiB}M, at least {Vessel.Guest.GuestKit.MinimumMemoryMiB}M).", DefaultValueFactory = _ => $"{Vessel.Vmm.VmConfig.DefaultMemoryMiB}M" };
        var reserved = new Option<string?>("--reserved") { Description = "Reserve this much ext4 space for root with the host's tune2fs -r before boot, e.g. 64M." };
        var accel = new Option<string?>("--accel") { Description = "kvm or tcg (default: probe; $VESSEL_ACCEL)." };
        var state = HomeOption.Create();
        state.Aliases.Add("--state");
        var timings = new Option<bool>("--timings") { Description = "Print the cold-start breakdown to stderr." };
        var insecure = new Option<bool>("--insecure") { Description = "Allow a registry without TLS (a local one) for a docker:// SOURCE." };
        var network = new NetworkOptions();
        var command = new Command("run", "Boot a microVM on SOURCE, run COMMAND in it, stream its output and exit with its exit code.")
        {
            source,
        };
        exec.AddTo(command);
        command.WithOptions(memory, reserved, accel, state, timings, insecure);
        network.AddTo(command);
        return command.WithAction(async (parse, token) =>
        {
            VesselHome home = HomeOption.Get(parse, state);
            Acceleration acceleration = ParseAcceleration(parse.GetValue(accel));
            // Before the kit or a VM: a file that is neither ext4 nor an image is refused here, in milliseconds.
            (string rootfsPath, IDisposable? held) = await RootfsForAsync(parse.GetValue(source)!, home, parse.GetValue(insecure), token);
            using IDisposable? cacheHold = held; // until the sandbox has its copy
            GuestKit kit = await KitCommands.EnsureKitAsync(token);
            var manager = new SandboxManager(home.Root, kit);
            IReadOnlyList<string> swept = await manager.SweepAsync(token);
            if (swept.Count > 0)
            {
                await Console.Error.WriteLineAsync($"vessel: removed leftovers of crashed runs: {string.Join(' ', swept)}");
            }
            var options = new SandboxOptions
            {
                RootfsPath = rootfsPath,
                MemoryMiB = (int)(ByteSize.Parse(parse.GetValue(memory)!) >> 20),
                ReservedBytes = parse.GetValue(reserved) is string r ? ByteSize.Parse(r) : null,
                Acceleration = acceleration,
                Network = network.Get(parse),
            };
            await using Sandbox sandbox = await manager.CreateAsync(options, token);
            return await ExecAsync(sandbox, exec.ToRequest(parse), parse.GetValue(timings), token);
        });
    }

    /// <summary>
    /// The ext4 image to boot for SOURCE: itself when it is one, else the cached rootfs built from
    /// the image it names, with a hold that keeps 'vessel gc' from removing it until it is copied.
    /// </summary>
    private static async Task<(string Path, IDisposable? Hold)> RootfsForAsync(string source, VesselHome home, bool insecure, CancellationToken token)
    {
        if (RootfsSource.Classify(source) == RootfsSourceKind.Ext4Image)
        {
            return (source, null);
        }
        var cache = new RootfsCache(home.Images);
        await using IImageSource image = await ImageSources.OpenAsync(source, new ImageSourceOptions { Insecure = insecure }, token);
        RootfsCacheEntry entry = await cache.EnsureAsync(image, token);
        // Held against 'vessel gc' until the sandbox has its own copy; gone meanwhile: built again.
        IDisposable? hold;
        while ((hold = await RootfsCache.HoldAsync(entry, token)) is null)
        {
            entry = await cache.EnsureAsync(image, token);
        }
        string how = entry.Built ? "built" : "cached";
        await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"vessel: rootfs {how}: {entry.Path} ({source}, {entry.ContentDigest}, {entry.Elapsed.TotalSeconds:0.00} s)"));
        return (entry.Path, hold);
    }

    /// <summary>Prints the start-up breakdown if asked, runs the command with the console's streams, and returns the exit code to exit with.</summary>
    internal static async Task<int> ExecAsync(Sandbox sandbox, ExecRequest request, bool timings, CancellationToken token)
    {
        if (timings)
        {
            SandboxTimings t = sandbox.Timings;
            string how = t.Restored ? "restored from snapshot" : "cold boot";
            string guest = t.Restored
                ? "guest uptime " + t.GuestAgentReady.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture) + " ms (carried over from the template)"
                : string.Create(CultureInfo.InvariantCulture, $"guest uptime at init {t.GuestInitStarted?.TotalMilliseconds:0} ms, agent start {t.GuestAgentStarted.TotalMilliseconds:0} ms, agent ready {t.GuestAgentReady.TotalMilliseconds:0} ms");
            await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"vessel: {sandbox.Id} ({sandbox.VirtualMachine.Acceleration}, {how}): prepare {t.PrepareAndHooks.TotalMilliseconds:0} ms, vmm started {t.VmmStarted.TotalMilliseconds:0} ms, agent ready {t.AgentReady.TotalMilliseconds:0} ms; {guest}"));
        }
        Stream? stdin = Console.IsInputRedirected ? Console.OpenStandardInput() : null;
        await using Stream stdout = Console.OpenStandardOutput();
        await using Stream stderr = Console.OpenStandardError();
        ExitStatus status = await sandbox.ExecAsync(request, stdin, stdout, stderr, token);
        if (status.TimedOut)
        {
            await Console.Error.WriteLineAsync($"vessel: the command timed out after {request.Timeout?.TotalSeconds} s and was killed");
            return 124;
        }
        return status.ExitCode;
    }

    internal static Acceleration ParseAcceleration(string? value) => value switch
    {
        null => Acceleration.Auto,
        "kvm" => Acceleration.Kvm,
        "tcg" => Acceleration.Tcg,
        string other => throw new VesselException(VesselErrorReason.InvalidInput, $"--accel {other}: use kvm or tcg."),
    };

    private static Command CreateSweep()
    {
        var state = HomeOption.Create();
        state.Aliases.Add("--state");
        var command = new Command("sweep", "Remove what crashed runs and template builds left behind (VMM processes, sockets, rootfs copies), by sandbox id.") { state };
        return command.WithAction(async (parse, token) =>
        {
            VesselHome home = HomeOption.Get(parse, state);
            var swept = await SandboxManager.SweepDirectoryAsync(home.Root, token);
            Console.WriteLine(swept.Count == 0 ? "nothing to sweep" : "swept " + string.Join(' ', swept));
            // Template builds share the directory: killed builds' overlay caches and 'running' rows.
            string work = home.Work;
            foreach (string cache in OverlayDevice.ReclaimLeftoverCaches(work).Concat(await WorkLeftovers.ReclaimAsync(work, token)))
            {
                Console.WriteLine($"removed {cache}");
            }
            string stateLocation = VesselSettings.Current.StateLocation(home);
            if (stateLocation != home.StateDatabase || File.Exists(home.StateDatabase))
            {
                StateStore store = await StateStore.OpenAsync(stateLocation, token);
                int failed = await store.FailBuildsOfDeadOwnersAsync(DateTimeOffset.UtcNow, token);
                if (failed > 0)
                {
                    Console.WriteLine($"marked {failed} build{(failed == 1 ? "" : "s")} of dead processes as failed");
                }
            }
            return 0;
        });
    }
}
