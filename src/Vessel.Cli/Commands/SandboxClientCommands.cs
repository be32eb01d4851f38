using System.CommandLine;
using System.Globalization;
using Vessel.Client;
using Vessel.Common;

namespace Vessel.Cli.Commands;

/// <summary>
/// <c>vessel sandbox create|exec|ls|pause|resume|kill|cp|logs|port</c>: thin clients of the daemon
/// (<c>vessel serve</c>) through <see cref="VesselClient"/>, so that a shell and a program see one
/// behaviour. <c>--home</c> finds the daemon's socket; <c>--host</c> and VESSEL_API_KEY reach one on TCP.
/// </summary>
internal static class SandboxClientCommands
{
    public static IEnumerable<Command> Create() => [CreateCommand(), Exec(), List(), Transition("pause"), Transition("resume"), Kill(), Copy(), Logs(), Port()];

    private static Command CreateCommand()
    {
        var template = new Argument<string?>("template") { Description = "The template to create the sandbox from (GET /templates, 'vessel template ls').", Arity = ArgumentArity.ZeroOrOne };
        var file = new Option<string?>("--file", "-f") { Description = "A request body as docs/api.md writes it, e.g. a pod: {\"containers\": [{\"name\", \"image\", \"command\"}], \"rootfs\": \"block\"}." };
        var timeout = new Option<double?>("--timeout") { Description = "Seconds until the daemon kills the sandbox (default 300, at most 86400)." };
        var meta = new Option<string[]>("--meta") { Description = "KEY=VALUE metadata to find the sandbox by (repeatable)." };
        var env = new Option<string[]>("--env", "-e") { Description = "KEY=VALUE for every command's environment (repeatable)." };
        var autoPause = new Option<bool>("--auto-pause") { Description = "Pause instead of kill when the timeout passes." };
        var command = new Command("create", "Create a sandbox from TEMPLATE (or a pod from -f FILE) in the daemon and print its id.") { template, file, timeout, meta, env, autoPause };
        var network = new NetworkOptions();
        network.AddTo(command);
        return WithClient(command, async (parse, client, token) =>
        {
            string? name = parse.GetValue(template);
            string? path = parse.GetValue(file);
            double? seconds = parse.GetValue(timeout);
            Dictionary<string, string>? metadata = Pairs(parse.GetValue(meta), "--meta");
            Dictionary<string, string>? environment = Pairs(parse.GetValue(env), "--env");
            if ((name is null) == (path is null))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "Give a TEMPLATE or --file FILE (a pod spec), not both or neither.");
            }
            Sandbox sandbox = path is not null
                ? await client.Sandboxes.CreateFromJsonAsync(await PodRequestAsync(path, seconds, metadata, environment, parse.GetValue(autoPause), network.GetForDaemon(parse), token), token)
                : await client.Sandboxes.CreateAsync(new SandboxCreateOptions
                {
                    Template = name!,
                    Timeout = seconds is double s ? TimeSpan.FromSeconds(s) : null,
                    Metadata = metadata,
                    Env = environment,
                    AutoPause = parse.GetValue(autoPause),
                    Network = network.GetForDaemon(parse),
                }, token);
            Console.WriteLine(sandbox.SandboxId);
            return 0;
        });
    }

    /// <summary>The file's JSON object with the command line's options set on it (they win over the file's).</summary>
    private static async Task<string> PodRequestAsync(string path, double? timeout, Dictionary<string, string>? metadata, Dictionary<string, string>? env, bool autoPause, Vessel.Client.SandboxNetwork? network, CancellationToken token)
    {
        InputFile.Require(path, "pod file");
        System.Text.Json.Nodes.JsonObject request;
        try
        {
            request = System.Text.Json.Nodes.JsonNode.Parse(await File.ReadAllTextAsync(path, token)) as System.Text.Json.Nodes.JsonObject
                ?? throw new VesselException(VesselErrorReason.InvalidInput, $"{path}: a pod file is one JSON object ({{\"containers\": [...]}}).");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{path}: not valid JSON: {e.Message}");
        }
        if (timeout is double s)
        {
            request["timeoutSeconds"] = (int)Math.Ceiling(s);
        }
        if (metadata is not null)
        {
            request["metadata"] = new System.Text.Json.Nodes.JsonObject(metadata.Select(p => KeyValuePair.Create(p.Key, (System.Text.Json.Nodes.JsonNode?)p.Value)));
        }
        if (env is not null)
        {
            request["env"] = new System.Text.Json.Nodes.JsonObject(env.Select(p => KeyValuePair.Create(p.Key, (System.Text.Json.Nodes.JsonNode?)p.Value)));
        }
        if (autoPause)
        {
            request["autoPause"] = true;
        }
        if (network is not null)
        {
            // The pod's one network (its containers share the VM's), as for a sandbox from a template.
            var rules = new System.Text.Json.Nodes.JsonObject
            {
                ["allow"] = new System.Text.Json.Nodes.JsonArray([.. (network.Allow ?? []).Select(r => (System.Text.Json.Nodes.JsonNode?)r)]),
                ["deny"] = new System.Text.Json.Nodes.JsonArray([.. (network.Deny ?? []).Select(r => (System.Text.Json.Nodes.JsonNode?)r)]),
            };
            if (network.Outbound is { } outbound)
            {
                rules["outbound"] = outbound switch { Vessel.Client.SandboxOutbound.On => "on", Vessel.Client.SandboxOutbound.Restrict => "restrict", _ => "off" };
            }
            request["network"] = rules;
        }
        return request.ToJsonString();
    }

    private static Command Exec()
    {
        var exec = new ExecOptions("KEY=VALUE for the command's environment (repeatable).", "in the guest; default /", "User: name, uid, name:group or uid:gid (default root).");
        var stdin = new Option<bool>("--stdin", "-i") { Description = "Read this program's stdin to its end and give it to the command." };
        var background = new Option<bool>("--background", "-d") { Description = "Start the command in the background and print its pid ('vessel sandbox logs ID PID' follows it)." };
        var container = new Option<string?>("--container", "-c") { Description = "In a pod: the container to run in." };
        var command = new Command("exec", "Run COMMAND in sandbox ID through the daemon, stream its output and exit with its exit code.");
        exec.AddTo(command);
        command.WithOptions(stdin, background, container);
        // A paused sandbox is the daemon's 409 ("resume it"), not a silent resume.
        return WithSandbox(command, async (parse, sandbox, token) =>
        {
            string[] argv = parse.GetValue(exec.CommandLine)!;
            await using Stream stdout = Console.OpenStandardOutput();
            await using Stream stderr = Console.OpenStandardError();
            var options = new CommandOptions
            {
                Env = Pairs(parse.GetValue(exec.Env), "--env"),
                Cwd = parse.GetValue(exec.Cwd),
                User = parse.GetValue(exec.User),
                Container = parse.GetValue(container),
                Timeout = exec.GetTimeout(parse),
                Stdin = parse.GetValue(stdin) ? await ReadStdinAsync(token) : null,
                CollectOutput = false,
                OnStdout = d => stdout.Write(d.Span),
                OnStderr = d => stderr.Write(d.Span),
            };
            if (parse.GetValue(background))
            {
                CommandHandle handle = await sandbox.Commands.StartAsync(argv[0], argv[1..], options, token);
                Console.WriteLine(handle.Pid.ToString(CultureInfo.InvariantCulture));
                return 0;
            }
            CommandResult result = await sandbox.Commands.RunAsync(argv[0], argv[1..], options, token);
            if (result.TimedOut)
            {
                await Console.Error.WriteLineAsync($"vessel: the command timed out after {options.Timeout?.TotalSeconds} s and was killed");
                return 124;
            }
            return result.ExitCode;
        });
    }

    private static Command List()
    {
        var state = new Option<string?>("--state") { Description = "Only sandboxes in this state: running or paused." };
        var meta = new Option<string[]>("--meta") { Description = "Only sandboxes with this KEY=VALUE metadata (repeatable)." };
        var command = new Command("ls", "List the daemon's sandboxes.") { state, meta };
        return WithClient(command, async (parse, client, token) =>
        {
            SandboxState? filter = parse.GetValue(state) switch
            {
                null => null,
                "running" => SandboxState.Running,
                "paused" => SandboxState.Paused,
                string other => throw new VesselException(VesselErrorReason.InvalidInput, $"--state {other}: use running or paused."),
            };
            var sandboxes = await client.Sandboxes.ListAsync(new SandboxQuery { State = filter, Metadata = Pairs(parse.GetValue(meta), "--meta") }, token);
            Console.WriteLine($"{"ID",-22} {"TEMPLATE",-16} {"STATE",-8} {"STARTED",-20} {"ENDS",-20} METADATA");
            foreach (SandboxInfo s in sandboxes)
            {
                string metadata = string.Join(',', s.Metadata.Select(kv => kv.Key + "=" + kv.Value));
                Console.WriteLine($"{s.SandboxId,-22} {s.Template,-16} {s.State.ToString().ToLowerInvariant(),-8} {Time(s.StartedAt),-20} {Time(s.EndAt),-20} {metadata}");
            }
            return 0;
        });
    }

    private static Command Port()
    {
        var port = new Argument<int>("port") { Description = "A TCP port a program in the sandbox listens on." };
        var command = new Command("port", "Make PORT of sandbox ID reachable from this machine and print HOST:PORT (HTTP and raw TCP; kept across pause/resume).") { port };
        return WithSandbox(command, async (parse, sandbox, token) =>
        {
            Console.WriteLine(await sandbox.GetHostAsync(parse.GetValue(port), token));
            return 0;
        });
    }

    private static Command Transition(string verb)
    {
        string description = verb == "pause"
            ? "Pause sandbox ID: snapshot its memory and disk and stop its VM ('vessel sandbox resume' brings it back)."
            : "Resume paused sandbox ID with its processes and files.";
        var command = new Command(verb, description);
        return WithSandbox(command, async (parse, sandbox, token) =>
        {
            if (verb == "pause")
            {
                await sandbox.PauseAsync(token);
            }
            else
            {
                await sandbox.ResumeAsync(token);
            }
            Console.WriteLine($"{sandbox.SandboxId} {sandbox.State.ToString().ToLowerInvariant()}");
            return 0;
        });
    }

    private static Command Kill()
    {
        var ids = new Argument<string[]>("id") { Description = "The sandboxes' ids.", Arity = ArgumentArity.OneOrMore };
        var command = new Command("kill", "Kill sandboxes: stop their VMs and delete their disks and snapshots.") { ids };
        return WithClient(command, async (parse, client, token) =>
        {
            foreach (string id in parse.GetValue(ids)!)
            {
                Sandbox sandbox = await client.Sandboxes.GetAsync(id, token);
                await sandbox.KillAsync(token);
                Console.WriteLine(id + " killed");
            }
            return 0;
        });
    }

    private static Command Copy()
    {
        var source = new Argument<string>("source") { Description = "A local path, '-' for stdin, or ID:/guest/path." };
        var destination = new Argument<string>("destination") { Description = "A local path (a directory keeps the name), '-' for stdout, or ID:/guest/path." };
        var command = new Command("cp", "Copy a file into or out of a sandbox (ID:/path on exactly one side); contents stream, never held whole.") { source, destination };
        return WithClient(command, async (parse, client, token) =>
        {
            GuestPath? from = GuestPath.Parse(parse.GetValue(source)!);
            GuestPath? to = GuestPath.Parse(parse.GetValue(destination)!);
            if ((from is null) == (to is null))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "cp: name the sandbox on exactly one side, as ID:/path (e.g. vessel sandbox cp app.py sbx-1:/srv/app.py).");
            }
            if (to is GuestPath upload)
            {
                string local = parse.GetValue(source)!;
                Sandbox sandbox = await client.Sandboxes.GetAsync(upload.SandboxId, token);
                await using Stream input = local == "-" ? Console.OpenStandardInput() : OpenLocal(local);
                await sandbox.Files.WriteAsync(upload.Path, input, token);
                return 0;
            }
            GuestPath download = from!.Value;
            string target = parse.GetValue(destination)!;
            Sandbox owner = await client.Sandboxes.GetAsync(download.SandboxId, token);
            await using Stream content = await owner.Files.OpenReadAsync(download.Path, token);
            if (target == "-")
            {
                await using Stream stdout = Console.OpenStandardOutput();
                await content.CopyToAsync(stdout, token);
                return 0;
            }
            if (Directory.Exists(target))
            {
                target = Path.Combine(target, Path.GetFileName(download.Path.TrimEnd('/')));
            }
            await CopyToFileAsync(content, target, token);
            return 0;
        });
    }

    private static Command Logs()
    {
        var pid = new Argument<int>("pid") { Description = "The process id ('vessel sandbox exec --background' printed it)." };
        var now = new Option<bool>("--now") { Description = "Only what the process writes from now on (default: from its start, as far as the daemon kept it)." };
        var command = new Command("logs", "Stream the output of background process PID in sandbox ID until it exits, and exit with its code.") { pid, now };
        return WithSandbox(command, async (parse, sandbox, token) =>
        {
            CommandHandle handle = sandbox.Commands.Connect(parse.GetValue(pid));
            await using Stream stdout = Console.OpenStandardOutput();
            await using Stream stderr = Console.OpenStandardError();
            await foreach (CommandOutput chunk in handle.ReadOutputAsync(!parse.GetValue(now), token))
            {
                Stream stream = chunk.Stream == CommandStream.Stdout ? stdout : stderr;
                await stream.WriteAsync(chunk.Data, token);
                await stream.FlushAsync(token);
            }
            return handle.ExitCode ?? 0;
        });
    }

    /// <summary>
    /// A command on one sandbox: puts its ID argument first and runs <paramref name="body"/> with
    /// that sandbox, looked up through <see cref="WithClient"/> (an unknown id is the daemon's 404).
    /// </summary>
    private static Command WithSandbox(Command command, Func<ParseResult, Sandbox, CancellationToken, Task<int>> body)
    {
        var id = new Argument<string>("id") { Description = "The sandbox's id." };
        command.Arguments.Insert(0, id);
        return WithClient(command, async (parse, client, token) => await body(parse, await client.Sandboxes.GetAsync(parse.GetValue(id)!, token), token));
    }

    /// <summary>Adds --home and --host to <paramref name="command"/> and runs <paramref name="body"/> with a client of that daemon.</summary>
    private static Command WithClient(Command command, Func<ParseResult, VesselClient, CancellationToken, Task<int>> body)
    {
        var home = HomeOption.Create();
        home.Description = "Vessel's home: the daemon's socket is HOME/vessel.sock (default: $VESSEL_HOME, else " + VesselHome.SystemRoot + " for root and ~/.local/share/vessel for others).";
        var host = new Option<string?>("--host") { Description = "A daemon on TCP (vessel serve --listen), e.g. http://10.0.0.5:7070; its key comes from $VESSEL_API_KEY.", HelpName = "URL" };
        command.Options.Add(home);
        command.Options.Add(host);
        return command.WithAction(async (parse, token) =>
        {
            try
            {
                await using VesselClient client = new(Options(parse.GetValue(host), HomeOption.Get(parse, home)));
                return await body(parse, client, token);
            }
            catch (VesselApiException e)
            {
                await Console.Error.WriteLineAsync("vessel: error: " + e.Message);
                return 1;
            }
            catch (ArgumentException e)
            {
                await Console.Error.WriteLineAsync("vessel: error: " + e.Message);
                return 2;
            }
        });
    }

    private static VesselClientOptions Options(string? host, VesselHome home)
    {
        if (host is null)
        {
            return new VesselClientOptions { SocketPath = home.Socket };
        }
        string withScheme = host.Contains("://", StringComparison.Ordinal) ? host : "http://" + host;
        if (!Uri.TryCreate(withScheme, UriKind.Absolute, out Uri? address))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"--host {host}: give http://HOST:PORT.");
        }
        string? key = VesselSettings.Current.ApiKey
            ?? throw new VesselException(VesselErrorReason.InvalidInput, "--host needs an API key in $VESSEL_API_KEY (make one with 'vessel keys create' on the daemon's machine).");
        return new VesselClientOptions { BaseAddress = address, ApiKey = key };
    }

    private static Dictionary<string, string>? Pairs(string[]? values, string option)
    {
        if (values is null || values.Length == 0)
        {
            return null;
        }
        var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string value in values)
        {
            int eq = value.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"{option} {value}: give KEY=VALUE.");
            }
            pairs[value[..eq]] = value[(eq + 1)..];
        }
        return pairs;
    }

    private static async Task<ReadOnlyMemory<byte>?> ReadStdinAsync(CancellationToken token)
    {
        const int Max = 768 * 1024; // the daemon takes JSON bodies up to 1 MiB and stdin travels base64 in one
        await using Stream stdin = Console.OpenStandardInput();
        using var buffer = new MemoryStream();
        await stdin.CopyToAsync(buffer, token);
        if (buffer.Length > Max)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"--stdin: {buffer.Length} bytes is more than the {Max} a command's stdin takes; copy the data in with 'vessel sandbox cp' instead.");
        }
        return buffer.ToArray();
    }

    private static Stream OpenLocal(string path)
    {
        if (!File.Exists(path))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"cp: {path}: no such file.");
        }
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
    }

    /// <summary>Writes to a temporary file beside <paramref name="target"/> and renames it, so a failed copy leaves no partial file.</summary>
    private static async Task CopyToFileAsync(Stream content, string target, CancellationToken token)
    {
        string full = Path.GetFullPath(target);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, "." + Path.GetFileName(full) + ".vessel-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        try
        {
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                await content.CopyToAsync(file, token);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary><c>ID:/path</c> on one side of <c>vessel sandbox cp</c> (write <c>./a:b</c> for a local name with a colon).</summary>
    private readonly record struct GuestPath(string SandboxId, string Path)
    {
        public static GuestPath? Parse(string value)
        {
            int colon = value.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || value.StartsWith("./", StringComparison.Ordinal) || value.StartsWith('/'))
            {
                return null;
            }
            string id = value[..colon];
            string path = value[(colon + 1)..];
            if (!id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                return null;
            }
            if (!path.StartsWith('/'))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"cp: {value}: the guest path must be absolute ({id}:/{path}).");
            }
            return new GuestPath(id, path);
        }
    }

    private static string Time(DateTimeOffset? t) => t?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) ?? "-";
}
