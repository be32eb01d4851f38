using System.Runtime.CompilerServices;
using System.Text;
using Vessel.Client.Wire;

namespace Vessel.Client;

/// <summary>A process running in a sandbox (<see cref="CommandsClient.StartAsync"/>).</summary>
public sealed class CommandHandle
{
    private readonly SandboxRoute _process;
    private readonly string _cmd;
    private CommandEvent? _exit;

    internal CommandHandle(SandboxRoute commands, int pid, string cmd)
    {
        _process = commands.Below(pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        _cmd = cmd;
        Pid = pid;
    }

    /// <summary>The process id in the guest.</summary>
    public int Pid { get; }

    /// <summary>The exit code once <see cref="ReadOutputAsync(CancellationToken)"/> or <see cref="WaitAsync"/> saw the process end; else null.</summary>
    public int? ExitCode => _exit is null ? null : CommandsClient.ExitCodeOf(_exit);

    /// <summary>
    /// Streams the process's output from its start (the daemon keeps the last 1 MiB) until it
    /// exits; then <see cref="ExitCode"/> is set. Each call opens a new stream.
    /// </summary>
    /// <param name="cancellationToken">Stops reading (the process keeps running).</param>
    /// <returns>The stdout and stderr chunks in the order the daemon sent them.</returns>
    /// <exception cref="VesselConnectionException">The daemon went away before the process ended.</exception>
    public IAsyncEnumerable<CommandOutput> ReadOutputAsync(CancellationToken cancellationToken = default)
        => ReadOutputAsync(fromStart: true, cancellationToken);

    /// <summary>Streams the process's output until it exits, from its start or only what it writes from now on.</summary>
    /// <param name="fromStart">True: replay what the daemon kept first; false: follow only.</param>
    /// <param name="cancellationToken">Stops reading (the process keeps running).</param>
    /// <returns>The stdout and stderr chunks in the order the daemon sent them.</returns>
    /// <exception cref="VesselConnectionException">The daemon went away before the process ended.</exception>
    public async IAsyncEnumerable<CommandOutput> ReadOutputAsync(bool fromStart, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ApiCall call = _process.Call($"read the output of '{_cmd}' (pid {Pid})", notFoundIsSandbox: false);
        string path = _process.Path + "/output" + (fromStart ? "" : "?from=now");
        using CommandEventReader reader = await CommandEventReader.OpenAsync(_process.Transport, HttpMethod.Get, path, null, call, cancellationToken);
        while (true)
        {
            CommandEvent e = await reader.ReadAsync(cancellationToken) ?? throw reader.EndedEarly(Pid);
            switch (e.Type)
            {
                case "stdout" when e.Data is not null:
                    yield return new CommandOutput(CommandStream.Stdout, e.Data);
                    break;
                case "stderr" when e.Data is not null:
                    yield return new CommandOutput(CommandStream.Stderr, e.Data);
                    break;
                case "exit":
                    _exit = e;
                    yield break;
            }
        }
    }

    /// <summary>Writes bytes to the process's stdin.</summary>
    /// <param name="data">The bytes.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the daemon passed them on.</returns>
    public Task SendStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
        => StdinAsync(data, close: false, cancellationToken);

    /// <summary>Writes text to the process's stdin, encoded as UTF-8.</summary>
    /// <param name="text">The text (add "\n" where the program reads lines).</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the daemon passed it on.</returns>
    public Task SendStdinAsync(string text, CancellationToken cancellationToken = default)
        => StdinAsync(Encoding.UTF8.GetBytes(text), close: false, cancellationToken);

    /// <summary>Closes the process's stdin (it reads end of file).</summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when stdin is closed.</returns>
    public Task CloseStdinAsync(CancellationToken cancellationToken = default)
        => StdinAsync(ReadOnlyMemory<byte>.Empty, close: true, cancellationToken);

    /// <summary>Sends a signal to the process.</summary>
    /// <param name="signal">The signal number (15 SIGTERM, 9 SIGKILL, 2 SIGINT...).</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the signal was sent.</returns>
    public Task SignalAsync(int signal, CancellationToken cancellationToken = default)
        => _process.Transport.SendAsync(HttpMethod.Post, _process.Path + "/signal", JsonBody.Create(new SignalRequest { Signal = signal }, WireJson.Default.SignalRequest),
            _process.Call($"signal '{_cmd}' (pid {Pid})", notFoundIsSandbox: false), cancellationToken);

    /// <summary>Kills the process (SIGKILL).</summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the signal was sent; <see cref="WaitAsync"/> for the end.</returns>
    public Task KillAsync(CancellationToken cancellationToken = default) => SignalAsync(9, cancellationToken);

    /// <summary>Waits until the process ends and returns its exit code (128 + signal when killed).</summary>
    /// <param name="cancellationToken">Stops waiting (the process keeps running).</param>
    /// <returns>The exit code.</returns>
    public async Task<int> WaitAsync(CancellationToken cancellationToken = default)
    {
        if (_exit is null)
        {
            await foreach (CommandOutput _ in ReadOutputAsync(cancellationToken))
            {
                // Drained: only the exit line matters here.
            }
        }
        return ExitCode!.Value;
    }

    private Task StdinAsync(ReadOnlyMemory<byte> data, bool close, CancellationToken cancellationToken)
    {
        var content = new ReadOnlyMemoryContent(data);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
        return _process.Transport.SendAsync(HttpMethod.Post, _process.Path + "/stdin" + (close ? "?close=true" : ""), content,
            _process.Call($"write to the stdin of '{_cmd}' (pid {Pid})", notFoundIsSandbox: false), cancellationToken);
    }
}
