using Vessel.Agent;
using Vessel.Agent.Protocol;

namespace Vessel.Service;

internal sealed partial class SandboxService
{
    /// <summary>
    /// Starts a command (docs/api.md, "commands"). The returned operation is still in flight for a
    /// foreground command (the caller disposes it when the stream ends); null for a background one.
    /// </summary>
    public async Task<(ServiceCommand Command, IDisposable? Operation)> StartCommandAsync(string id, CommandRequest request, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(request.Cmd))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "cmd: the program to run is required (use {\"cmd\": \"/bin/sh\", \"args\": [\"-c\", \"...\"]} for a shell line).");
        }
        if (request.TimeoutSeconds is <= 0 or > MaxTimeoutSeconds)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"timeoutSeconds: {request.TimeoutSeconds} is outside 1 to {MaxTimeoutSeconds}.");
        }
        byte[]? stdin = null;
        if (request.Stdin is { } encoded)
        {
            try
            {
                stdin = Convert.FromBase64String(encoded);
            }
            catch (FormatException)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "stdin: not valid base64.");
            }
        }
        CheckNoNulls("env", request.Env);
        List<string> args = request.Args ?? [];
        if (args.Any(a => a is null || a.Contains('\0', StringComparison.Ordinal)) || request.Cmd.Contains('\0', StringComparison.Ordinal))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "args: null entries and NUL characters are not allowed.");
        }
        ServiceSandbox sandbox = Find(id);
        string? container = ContainerOf(sandbox, request.Container);
        bool background = request.Background ?? false;
        ServiceSandbox.Operation operation = sandbox.BeginOperation();
        try
        {
            ExecRequest exec = new([request.Cmd, .. args])
            {
                Environment = [.. sandbox.Config.Env, .. sandbox.Env.Select(e => $"{e.Key}={e.Value}"), .. (request.Env ?? []).Select(e => $"{e.Key}={e.Value}")],
                // In a pod, the container's own workdir and user unless the request names others.
                WorkingDirectory = request.Cwd ?? (container is null ? sandbox.Config.Workdir : null),
                User = request.User ?? (container is null ? sandbox.Config.User : null),
                Container = container,
                Stdin = background || stdin is not null,
                Timeout = request.TimeoutSeconds is { } t ? TimeSpan.FromSeconds(t) : null,
            };
            ExecSession session = await sandbox.Live!.Agent.StartAsync(exec, cancellationToken);
            var command = new ServiceCommand(session.Pid, request.Cmd, args, background, Time.GetUtcNow(), stdinOpen: exec.Stdin);
            sandbox.Commands[command.Pid] = command;
            command.Attach(session, Time);
            if (stdin is not null)
            {
                await command.WriteStdinAsync(stdin, close: !background, cancellationToken);
            }
            if (background)
            {
                operation.Dispose();
                return (command, null);
            }
            return (command, operation);
        }
        catch
        {
            operation.Dispose();
            throw;
        }
    }

    public IReadOnlyList<CommandInfo> ListCommands(string id)
        => Find(id).Commands.Values.Where(c => !c.Output.Completed).OrderBy(c => c.Pid)
            .Select(c => new CommandInfo(c.Pid, c.Cmd, c.Args, c.Background, c.StartedAt.UtcDateTime)).ToList();

    public ServiceCommand GetCommand(string id, int pid)
        => Find(id).Commands.TryGetValue(pid, out ServiceCommand? c)
            ? c
            : throw new VesselException(VesselErrorReason.NotFound, $"Sandbox {id} has no process {pid} started through the API (GET /sandboxes/{id}/commands lists them).");

    /// <summary>Writes to a running process's stdin (a paused sandbox: 409).</summary>
    public async Task WriteStdinAsync(string id, int pid, Stream body, bool close, CancellationToken cancellationToken)
    {
        ServiceCommand command = GetCommand(id, pid);
        using ServiceSandbox.Operation operation = Find(id).BeginOperation();
        byte[] buffer = new byte[MuxConnection.MaxDataChunk];
        int n;
        while ((n = await body.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await command.WriteStdinAsync(buffer.AsMemory(0, n), close: false, cancellationToken);
        }
        if (close)
        {
            await command.WriteStdinAsync(ReadOnlyMemory<byte>.Empty, close: true, cancellationToken);
        }
    }

    public async Task SignalAsync(string id, int pid, int? signal, CancellationToken cancellationToken)
    {
        if (signal is not (>= 1 and <= 64))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"signal: {signal?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null"} is not a signal number from 1 to 64.");
        }
        ServiceCommand command = GetCommand(id, pid);
        using ServiceSandbox.Operation operation = Find(id).BeginOperation();
        await command.SignalAsync(signal.Value, cancellationToken);
    }

    /// <summary>Runs a file operation on a running sandbox's agent, counted as in flight.</summary>
    public Task<T> WithAgentAsync<T>(string id, Func<AgentClient, Task<T>> operation) => WithAgentAsync(id, null, operation);

    /// <summary>Runs a file operation on a running sandbox's agent (in a pod, on <paramref name="container"/>'s root), counted as in flight.</summary>
    public async Task<T> WithAgentAsync<T>(string id, string? container, Func<AgentClient, Task<T>> operation)
    {
        ServiceSandbox sandbox = Find(id);
        container = ContainerOf(sandbox, container);
        using ServiceSandbox.Operation op = sandbox.BeginOperation();
        AgentClient agent = sandbox.Live!.Agent;
        return await operation(container is null ? agent : agent.InContainer(container));
    }
}
