using Vessel.Client.Wire;

namespace Vessel.Client;

/// <summary>Runs commands in one sandbox: <see cref="Sandbox.Commands"/>.</summary>
public sealed class CommandsClient
{
    private readonly SandboxRoute _commands;

    internal CommandsClient(SandboxRoute sandbox)
    {
        _commands = sandbox.Below("commands");
    }

    /// <summary>
    /// Runs a command to its end and returns its exit code and output. A non-zero exit code is a
    /// result, not an exception.
    /// </summary>
    /// <param name="cmd">The program (looked up on the guest's PATH).</param>
    /// <param name="args">Its arguments.</param>
    /// <param name="options">Environment, directory, user, stdin, timeout and output callbacks.</param>
    /// <param name="cancellationToken">Stops waiting and closes the stream.</param>
    /// <returns>The exit status and everything the command wrote.</returns>
    /// <exception cref="SandboxNotFoundException">No such sandbox.</exception>
    /// <exception cref="VesselApiException">409 when the sandbox is paused.</exception>
    /// <exception cref="VesselConnectionException">The daemon went away before the command ended.</exception>
    public async Task<CommandResult> RunAsync(string cmd, IReadOnlyList<string>? args = null, CommandOptions? options = null, CancellationToken cancellationToken = default)
    {
        CommandRequest body = Request(cmd, args, options, background: false);
        ApiCall call = Call(cmd);
        using CommandEventReader reader = await CommandEventReader.OpenAsync(_commands.Transport, HttpMethod.Post, _commands.Path, body, call, cancellationToken);
        using var stdout = new MemoryStream();
        using var stderr = new MemoryStream();
        int pid = 0;
        bool collect = options?.CollectOutput ?? true;
        while (true)
        {
            CommandEvent e = await reader.ReadAsync(cancellationToken) ?? throw reader.EndedEarly(pid);
            switch (e.Type)
            {
                case "start":
                    pid = e.Pid ?? 0;
                    break;
                case "stdout" when e.Data is not null:
                    if (collect)
                    {
                        stdout.Write(e.Data);
                    }
                    options?.OnStdout?.Invoke(e.Data);
                    break;
                case "stderr" when e.Data is not null:
                    if (collect)
                    {
                        stderr.Write(e.Data);
                    }
                    options?.OnStderr?.Invoke(e.Data);
                    break;
                case "exit":
                    return new CommandResult
                    {
                        Pid = pid,
                        ExitCode = ExitCodeOf(e),
                        Signal = e.Signal,
                        TimedOut = e.TimedOut ?? false,
                        StdoutBytes = stdout.ToArray(),
                        StderrBytes = stderr.ToArray(),
                    };
            }
        }
    }

    /// <summary>
    /// Starts a command in the background and returns as soon as it runs; read its output, feed
    /// its stdin, signal it and wait for it through the handle. It keeps running if this program ends.
    /// </summary>
    /// <param name="cmd">The program.</param>
    /// <param name="args">Its arguments.</param>
    /// <param name="options">Environment, directory, user and timeout (stdin and callbacks do not apply).</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A handle on the running process.</returns>
    public async Task<CommandHandle> StartAsync(string cmd, IReadOnlyList<string>? args = null, CommandOptions? options = null, CancellationToken cancellationToken = default)
    {
        CommandRequest body = Request(cmd, args, options, background: true);
        ApiCall call = Call(cmd);
        using CommandEventReader reader = await CommandEventReader.OpenAsync(_commands.Transport, HttpMethod.Post, _commands.Path, body, call, cancellationToken);
        while (await reader.ReadAsync(cancellationToken) is CommandEvent e)
        {
            if (e.Type == "start" && e.Pid is int pid)
            {
                return new CommandHandle(_commands, pid, cmd);
            }
        }
        throw reader.EndedEarly(0);
    }

    /// <summary>A handle on a process started earlier (e.g. by another program), by its pid.</summary>
    /// <param name="pid">The process id from <see cref="ListAsync"/> or <see cref="CommandHandle.Pid"/>.</param>
    /// <returns>The handle; nothing is checked until it is used.</returns>
    public CommandHandle Connect(int pid) => new(_commands, pid, "process " + pid);

    /// <summary>Lists the processes the daemon started in this sandbox that still run.</summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The processes.</returns>
    public async Task<IReadOnlyList<ProcessInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var call = new ApiCall($"list the processes of sandbox {_commands.SandboxId}", _commands.SandboxId);
        List<ProcessWire> wires = await _commands.Transport.SendAsync(HttpMethod.Get, _commands.Path, null, WireJson.Default.ListProcessWire, call, cancellationToken);
        return wires.Select(w => new ProcessInfo { Pid = w.Pid, Cmd = w.Cmd, Args = w.Args ?? [], Background = w.Background ?? false, StartedAt = w.StartedAt }).ToList();
    }

    internal static int ExitCodeOf(CommandEvent exit) => exit.ExitCode ?? (exit.Signal is int s ? 128 + s : -1);

    private ApiCall Call(string cmd) => _commands.Call($"run '{cmd}'", notFoundIsSandbox: true);

    private static CommandRequest Request(string cmd, IReadOnlyList<string>? args, CommandOptions? options, bool background)
    {
        ArgumentException.ThrowIfNullOrEmpty(cmd);
        if (options?.Timeout is TimeSpan t && t <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), t, "A command timeout must be positive.");
        }
        return new CommandRequest
        {
            Cmd = cmd,
            Args = args ?? [],
            Env = options?.Env,
            Cwd = options?.Cwd,
            User = options?.User,
            Stdin = options?.Stdin?.ToArray(),
            Background = background,
            TimeoutSeconds = options?.Timeout?.TotalSeconds,
            Container = options?.Container,
        };
    }
}
