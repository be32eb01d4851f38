using System.CommandLine;
using Vessel.Agent;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Guest;
using Vessel.Sandboxes;
using Vessel.State;
using Vessel.Templates;

namespace Vessel.Cli.Commands;

internal static class TemplateCommands
{
    public static Command Create() => new Command("template", "Build and manage templates: a base image or parent template, a disk, build steps and a start command, stored as layers.")
        .WithSubcommands(Build(), Run(), List(), Show(), Remove(), TemplateTransferCommands.Push(), TemplateTransferCommands.Pull());

    private static Command Build()
    {
        var file = new Option<string>("--file", "-f") { Description = "The template spec (JSON; see docs/formats/template-spec.md).", Required = true };
        var noCache = new Option<bool>("--no-cache") { Description = "Run every phase even when cached; the results replace the cache entries." };
        var hostname = new Option<string>("--hostname") { Description = "Hostname written into the provisioning files.", DefaultValueFactory = _ => "vessel" };
        var noVm = new Option<bool>("--no-vm") { Description = "Run COPY/ENV/WORKDIR/USER on the host's view of the layer without booting a VM (no RUN, start or ready; no snapshot)." };
        var accel = new Option<string?>("--accel") { Description = "kvm or tcg for the build VM (default: probe; $VESSEL_ACCEL)." };
        var home = Commands.HomeOption.Create();
        var command = new Command("build",
            "Build a template in phases (base, one per step, finalize). Steps run in a build VM; finalize starts the start command, waits for the ready check and snapshots the VM. "
            + "Cached phases are skipped and marked CACHED; step output is streamed.")
        {
            file, noCache, hostname, noVm, accel, home,
        };
        return command.WithAction(async (parse, ct) =>
        {
            TemplateSpec spec = TemplateSpecReader.ReadFile(parse.GetValue(file)!);
            VesselHome dir = Commands.HomeOption.Get(parse, home);
            StateStore state = await StateStore.OpenAsync(VesselSettings.Current.StateLocation(dir), ct);
            IStepRunner runner = parse.GetValue(noVm) ? new HostStepRunner() : await SandboxRunnerAsync(dir, SandboxCommands.ParseAcceleration(parse.GetValue(accel)), ct);
            var builder = new TemplateBuilder(state, LayerStore.OpenHome(dir, VesselSettings.Current), runner, dir.Root);
            Console.Error.WriteLine($"building template '{spec.Name}' from {spec.FromImage ?? "template " + spec.FromTemplate} ({spec.Steps.Count} steps)");
            TemplateBuildResult result = await builder.BuildAsync(spec,
                new TemplateBuildOptions { NoCache = parse.GetValue(noCache), Hostname = parse.GetValue(hostname)! },
                new BuildDisplay(), ct);
            int cached = result.Phases.Count(p => p.Cached);
            Console.Error.WriteLine(
                $"built '{result.Name}' in {result.Elapsed.TotalSeconds:0.00} s ({cached} of {result.Phases.Count} phases cached): layer {result.LayerBuildId}, disk {ByteSize.Format(result.DiskSizeBytes)}");
            Console.WriteLine(result.FinalHash);
            return 0;
        });
    }

    /// <summary>Build VMs live under HOME/sandboxes; leftovers of a crashed build are swept first.</summary>
    private static async Task<IStepRunner> SandboxRunnerAsync(VesselHome home, Vessel.Vmm.Acceleration acceleration, CancellationToken ct)
    {
        GuestKit kit = await KitCommands.EnsureKitAsync(ct);
        var manager = new SandboxManager(home.Root, kit);
        IReadOnlyList<string> swept = await manager.SweepAsync(ct);
        if (swept.Count > 0)
        {
            await Console.Error.WriteLineAsync($"vessel: removed leftovers of crashed builds: {string.Join(' ', swept)}");
        }
        return new SandboxStepRunner(manager) { Acceleration = acceleration };
    }

    private static Command Run()
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var exec = new ExecOptions("KEY=VALUE added to the template's environment (repeatable).", "default: the template's WORKDIR", "User (default: the template's USER).");
        var cold = new Option<bool>("--cold") { Description = "Boot the template's disk instead of resuming its snapshot." };
        var timings = new Option<bool>("--timings") { Description = "Print the start-up breakdown to stderr." };
        var accel = new Option<string?>("--accel") { Description = "kvm or tcg (default: probe; $VESSEL_ACCEL)." };
        var home = Commands.HomeOption.Create();
        var command = new Command("run",
            "Start a sandbox from template NAME (resuming its snapshot: memory copy-on-write from the template's file, disk a copy-on-write layer over the template's), run COMMAND, exit with its code. The template is not changed.")
        {
            name,
        };
        exec.AddTo(command);
        command.WithOptions(cold, timings, accel, home);
        return command.WithAction(async (parse, token) =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            VesselHome dir = Commands.HomeOption.Get(parse, home);
            StateStore state = await StateStore.OpenAsync(VesselSettings.Current.StateLocation(dir), token);
            string n = parse.GetValue(name)!;
            TemplateRecord t = await state.GetTemplateAsync(n, token) ?? throw NoTemplate(n);
            TemplateConfig config = TemplateConfig.FromJson(t.ConfigJson, $"template '{n}'");
            GuestKit kit = await KitCommands.EnsureKitAsync(token);
            var manager = new SandboxManager(dir.Root, kit);
            await manager.SweepAsync(token);
            TimeSpan prepared = clock.Elapsed;
            LayerStore layers = LayerStore.OpenHome(dir, VesselSettings.Current);
            await using Sandbox sandbox = await manager.CreateFromTemplateAsync(layers, t,
                new SandboxOptions { Acceleration = SandboxCommands.ParseAcceleration(parse.GetValue(accel)) }, restore: !parse.GetValue(cold), token, m => Console.Error.WriteLine("vessel: " + m));
            ExecRequest request = exec.ToRequest(parse, config.Env, config.Workdir, config.User);
            TimeSpan created = clock.Elapsed;
            int code = await SandboxCommands.ExecAsync(sandbox, request, parse.GetValue(timings), token);
            TimeSpan ran = clock.Elapsed;
            // The sandbox's disk is a throwaway overlay: no guest shutdown to wait for.
            await sandbox.KillAsync();
            if (parse.GetValue(timings))
            {
                await Console.Error.WriteLineAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"vessel: in this process: state + kit + sweep {prepared.TotalMilliseconds:0} ms, sandbox {(created - prepared).TotalMilliseconds:0} ms, command {(ran - created).TotalMilliseconds:0} ms, stop {(clock.Elapsed - ran).TotalMilliseconds:0} ms"));
                if ((layers.Storage as TieredLayerStorage)?.Remote is S3LayerStorage bucket)
                {
                    long memory = sandbox.RemoteMemoryFetchedBytes;
                    await Console.Error.WriteLineAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"vessel: fetched from {bucket.Location}: {bucket.Cache.FetchedBytes} bytes (memory {memory}, layers {bucket.Cache.FetchedBytes - memory})"));
                }
            }
            return code;
        });
    }

    private static Command List()
    {
        var home = Commands.HomeOption.Create();
        var command = new Command("ls", "List the built templates.") { home };
        return command.WithAction(async (parse, ct) =>
        {
            StateStore state = await StateStore.OpenAsync(VesselSettings.Current.StateLocation(Commands.HomeOption.GetExisting(parse, home)), ct);
            IReadOnlyList<TemplateRecord> templates = await state.ListTemplatesAsync(ct);
            Console.WriteLine($"{"NAME",-24}  {"DISK",10}  {"HASH",-12}  {"LAYER",-36}  BUILT");
            foreach (TemplateRecord t in templates)
            {
                Console.WriteLine($"{t.Name,-24}  {ByteSize.Format(t.DiskSizeBytes),10}  {t.FinalHash[..12],-12}  {t.LayerBuildId,-36}  {t.BuiltAt:yyyy-MM-dd HH:mm:ss}");
            }
            return 0;
        });
    }

    private static Command Show() => OnTemplate("show", "Show a template: its spec, runtime config, layer and builds.", async (state, n, ct) =>
    {
        TemplateRecord t = await state.GetTemplateAsync(n, ct) ?? throw NoTemplate(n);
        Console.WriteLine($"name:      {t.Name}");
        Console.WriteLine($"hash:      {t.FinalHash}");
        Console.WriteLine($"layer:     {t.LayerBuildId}");
        Console.WriteLine($"disk:      {ByteSize.Format(t.DiskSizeBytes)}");
        Console.WriteLine($"snapshot:  {t.SnapshotDirectory ?? "(none: built without the sandbox runtime)"}");
        Console.WriteLine($"built at:  {t.BuiltAt:u}");
        Console.WriteLine($"config:    {t.ConfigJson}");
        Console.WriteLine("spec:");
        Console.WriteLine(t.SpecJson);
        Console.WriteLine("builds:");
        foreach (BuildRecord b in await state.ListBuildsAsync(n, ct))
        {
            Console.WriteLine($"  #{b.Id} {b.Status,-9} {b.StartedAt:u}{(b.Error is null ? string.Empty : "  " + b.Error.Split('\n')[0])}");
        }
    });

    private static Command Remove() => OnTemplate("rm",
        "Remove a template's name. Its layers stay in the block store while cache entries use them, so a rebuild is still cached.", async (state, n, ct) =>
        {
            if (!await state.DeleteTemplateAsync(n, ct))
            {
                throw NoTemplate(n);
            }
            Console.Error.WriteLine($"removed template '{n}'");
        });

    /// <summary>A command that takes a template name and an existing --home, and does <paramref name="act"/> with the home's state.</summary>
    private static Command OnTemplate(string verb, string description, Func<StateStore, string, CancellationToken, Task> act)
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var home = Commands.HomeOption.Create();
        var command = new Command(verb, description) { name, home };
        return command.WithAction(async (parse, ct) =>
        {
            StateStore state = await StateStore.OpenAsync(VesselSettings.Current.StateLocation(Commands.HomeOption.GetExisting(parse, home)), ct);
            await act(state, parse.GetValue(name)!, ct);
            return 0;
        });
    }

    private static VesselException NoTemplate(string name) =>
        new(VesselErrorReason.NotFound, $"there is no template named '{name}' (see 'vessel template ls').");

    /// <summary>One line per phase event on stderr; step output indented under its phase.</summary>
    private sealed class BuildDisplay : IProgress<BuildEvent>
    {
        private readonly object _gate = new();
        private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

        public void Report(BuildEvent e)
        {
            string line = e.Describe(_clock.Elapsed);
            lock (_gate)
            {
                Console.Error.WriteLine(line);
            }
        }
    }
}
