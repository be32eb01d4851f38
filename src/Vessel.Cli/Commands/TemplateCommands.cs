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
    public static Command Create()
    {
        var command = new Command("template", "Build and manage templates: a base image or parent template, a disk, build steps and a start command, stored as layers.");
        command.Subcommands.Add(Build());
        command.Subcommands.Add(Run());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Show());
        command.Subcommands.Add(Remove());
        command.Subcommands.Add(TemplateTransferCommands.Push());
        command.Subcommands.Add(TemplateTransferCommands.Pull());
        return command;
    }

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
        command.SetAction((parse, ct) => CliRunner.RunAsync(async ct =>
        {
            TemplateSpec spec = TemplateSpecReader.ReadFile(parse.GetValue(file)!);
            VesselHome dir = Commands.HomeOption.Get(parse, home);
            StateStore state = await StateStore.OpenAsync(dir.StateDatabase, ct);
            IStepRunner runner = parse.GetValue(noVm) ? new HostStepRunner() : await SandboxRunnerAsync(dir, SandboxCommands.ParseAcceleration(parse.GetValue(accel)), ct);
            var builder = new TemplateBuilder(state, LayerStore.OpenDirectory(dir.Blocks), runner, dir.Root);
            Console.Error.WriteLine($"building template '{spec.Name}' from {spec.FromImage ?? "template " + spec.FromTemplate} ({spec.Steps.Count} steps)");
            TemplateBuildResult result = await builder.BuildAsync(spec,
                new TemplateBuildOptions { NoCache = parse.GetValue(noCache), Hostname = parse.GetValue(hostname)! },
                new BuildDisplay(), ct);
            int cached = result.Phases.Count(p => p.Cached);
            Console.Error.WriteLine(
                $"built '{result.Name}' in {result.Elapsed.TotalSeconds:0.00} s ({cached} of {result.Phases.Count} phases cached): layer {result.LayerBuildId}, disk {ByteSize.Format(result.DiskSizeBytes)}");
            Console.WriteLine(result.FinalHash);
            return 0;
        }, ct));
        return command;
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
        var commandLine = new Argument<string[]>("command") { Description = "The command and its arguments, after --.", Arity = ArgumentArity.OneOrMore };
        var env = new Option<string[]>("--env", "-e") { Description = "KEY=VALUE added to the template's environment (repeatable)." };
        var cwd = new Option<string?>("--cwd", "-w") { Description = "Working directory (default: the template's WORKDIR)." };
        var user = new Option<string?>("--user", "-u") { Description = "User (default: the template's USER)." };
        var timeout = CliOptions.Seconds("--timeout", "Kill the command after this many seconds (exit 124 then).");
        var cold = new Option<bool>("--cold") { Description = "Boot the template's disk instead of resuming its snapshot." };
        var timings = new Option<bool>("--timings") { Description = "Print the start-up breakdown to stderr." };
        var accel = new Option<string?>("--accel") { Description = "kvm or tcg (default: probe; $VESSEL_ACCEL)." };
        var home = Commands.HomeOption.Create();
        var command = new Command("run",
            "Start a sandbox from template NAME (resuming its snapshot: memory copy-on-write from the template's file, disk a copy-on-write layer over the template's), run COMMAND, exit with its code. The template is not changed.")
        {
            name, commandLine, env, cwd, user, timeout, cold, timings, accel, home,
        };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async token =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            VesselHome dir = Commands.HomeOption.Get(parse, home);
            StateStore state = await StateStore.OpenAsync(dir.StateDatabase, token);
            string n = parse.GetValue(name)!;
            TemplateRecord t = await state.GetTemplateAsync(n, token)
                ?? throw new VesselException(VesselErrorReason.NotFound, $"there is no template named '{n}' (see 'vessel template ls').");
            TemplateConfig config = TemplateConfig.FromJson(t.ConfigJson, $"template '{n}'");
            GuestKit kit = await KitCommands.EnsureKitAsync(token);
            var manager = new SandboxManager(dir.Root, kit);
            await manager.SweepAsync(token);
            TimeSpan prepared = clock.Elapsed;
            await using Sandbox sandbox = await manager.CreateFromTemplateAsync(LayerStore.OpenDirectory(dir.Blocks), t,
                new SandboxOptions { Acceleration = SandboxCommands.ParseAcceleration(parse.GetValue(accel)) }, restore: !parse.GetValue(cold), token, m => Console.Error.WriteLine("vessel: " + m));
            var request = new ExecRequest(parse.GetValue(commandLine)!)
            {
                Environment = [.. config.Env, .. parse.GetValue(env) ?? []],
                WorkingDirectory = parse.GetValue(cwd) ?? config.Workdir,
                User = parse.GetValue(user) ?? config.User,
                Timeout = parse.GetValue(timeout) is double s ? TimeSpan.FromSeconds(s) : null,
            };
            TimeSpan created = clock.Elapsed;
            int code = await SandboxCommands.ExecAsync(sandbox, request, parse.GetValue(timings), token);
            TimeSpan ran = clock.Elapsed;
            // The sandbox's disk is a throwaway overlay: no guest shutdown to wait for.
            await sandbox.KillAsync();
            if (parse.GetValue(timings))
            {
                await Console.Error.WriteLineAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"vessel: in this process: state + kit + sweep {prepared.TotalMilliseconds:0} ms, sandbox {(created - prepared).TotalMilliseconds:0} ms, command {(ran - created).TotalMilliseconds:0} ms, stop {(clock.Elapsed - ran).TotalMilliseconds:0} ms"));
            }
            return code;
        }, ct));
        return command;
    }

    private static Command List()
    {
        var home = Commands.HomeOption.Create();
        var command = new Command("ls", "List the built templates.") { home };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async ct =>
        {
            StateStore state = await StateStore.OpenAsync(Commands.HomeOption.GetExisting(parse, home).StateDatabase, ct);
            IReadOnlyList<TemplateRecord> templates = await state.ListTemplatesAsync(ct);
            Console.WriteLine($"{"NAME",-24}  {"DISK",10}  {"HASH",-12}  {"LAYER",-36}  BUILT");
            foreach (TemplateRecord t in templates)
            {
                Console.WriteLine($"{t.Name,-24}  {ByteSize.Format(t.DiskSizeBytes),10}  {t.FinalHash[..12],-12}  {t.LayerBuildId,-36}  {t.BuiltAt:yyyy-MM-dd HH:mm:ss}");
            }
            return 0;
        }, ct));
        return command;
    }

    private static Command Show()
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var home = Commands.HomeOption.Create();
        var command = new Command("show", "Show a template: its spec, runtime config, layer and builds.") { name, home };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async ct =>
        {
            StateStore state = await StateStore.OpenAsync(Commands.HomeOption.GetExisting(parse, home).StateDatabase, ct);
            string n = parse.GetValue(name)!;
            TemplateRecord t = await state.GetTemplateAsync(n, ct)
                ?? throw new VesselException(VesselErrorReason.NotFound, $"there is no template named '{n}' (see 'vessel template ls').");
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
            return 0;
        }, ct));
        return command;
    }

    private static Command Remove()
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var home = Commands.HomeOption.Create();
        var command = new Command("rm", "Remove a template's name. Its layers stay in the block store while cache entries use them, so a rebuild is still cached.") { name, home };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async ct =>
        {
            StateStore state = await StateStore.OpenAsync(Commands.HomeOption.GetExisting(parse, home).StateDatabase, ct);
            string n = parse.GetValue(name)!;
            if (!await state.DeleteTemplateAsync(n, ct))
            {
                throw new VesselException(VesselErrorReason.NotFound, $"there is no template named '{n}' (see 'vessel template ls').");
            }
            Console.Error.WriteLine($"removed template '{n}'");
            return 0;
        }, ct));
        return command;
    }

    /// <summary>One line per phase event on stderr; step output indented under its phase.</summary>
    private sealed class BuildDisplay : IProgress<BuildEvent>
    {
        private readonly object _gate = new();
        private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

        public void Report(BuildEvent e)
        {
            string head = $"[{e.Phase + 1}/{e.Phases}] {e.Title}";
            string? line = e.Kind switch
            {
                BuildEventKind.Started => $"{head}",
                BuildEventKind.Cached => $"{head}  CACHED",
                BuildEventKind.Waiting => $"{head}  waiting: {e.Message}",
                BuildEventKind.Output => $"      | {_clock.Elapsed.TotalSeconds,6:0.00}s {e.Message}",
                BuildEventKind.Done => $"      done in {e.Elapsed.TotalSeconds:0.00} s",
                BuildEventKind.Failed => $"{head}  FAILED: {e.Message}",
                _ => null,
            };
            if (line is not null)
            {
                lock (_gate)
                {
                    Console.Error.WriteLine(line);
                }
            }
        }
    }
}
