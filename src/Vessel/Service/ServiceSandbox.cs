using System.Collections.Concurrent;
using System.Text.Json;
using Vessel.Sandboxes;
using Vessel.State;
using Vessel.Templates;

namespace Vessel.Service;

/// <summary>
/// One sandbox the daemon manages: its API identity (stable across pauses), the live
/// <see cref="Sandbox"/> while running or the <see cref="PausedSandbox"/> while paused, its
/// commands, and the rules that keep two requests from corrupting it: file and command
/// operations count as in flight; pause and resume hold <see cref="Transition"/> and are refused
/// (409) while anything is in flight; delete waits for a transition and ignores operations.
/// </summary>
internal sealed class ServiceSandbox(string id, string template, TemplateConfig config, DateTimeOffset startedAt, int timeoutSeconds, bool autoPause, IReadOnlyDictionary<string, string> metadata, IReadOnlyDictionary<string, string> env)
{
    private readonly object _gate = new();
    private int _operations;
    private bool _transition;
    private bool _deleted;

    public string Id { get; } = id;

    public string Template { get; } = template;

    /// <summary>The template's runtime config: default env, workdir and user of commands.</summary>
    public TemplateConfig Config { get; } = config;

    public DateTimeOffset StartedAt { get; } = startedAt;

    public int TimeoutSeconds { get; set; } = timeoutSeconds;

    public DateTimeOffset EndAt { get; set; } = startedAt.AddSeconds(timeoutSeconds);

    public bool AutoPause { get; } = autoPause;

    public IReadOnlyDictionary<string, string> Metadata { get; } = metadata;

    public IReadOnlyDictionary<string, string> Env { get; } = env;

    /// <summary>The rules its VMs run with (the same again on every resume).</summary>
    public Vessel.Vmm.NetworkConfig Network { get; init; } = Vessel.Vmm.NetworkConfig.Default;

    /// <summary>While paused with its snapshot in the cluster's bucket: the row's <c>remote_snapshot</c> (<see cref="Service.RemoteSnapshot"/>), else null.</summary>
    public string? RemoteSnapshot { get; set; }

    /// <summary>Guest port to host port on 127.0.0.1 (POST /sandboxes/{id}/ports/{port}); added again on resume.</summary>
    public ConcurrentDictionary<int, int> Ports { get; } = new();

    /// <summary>For a pod: its spec and containers (kept while paused).</summary>
    public PodInfo? Pod { get; init; }

    /// <summary>Set while running.</summary>
    public Sandbox? Live { get; set; }

    /// <summary>Set while paused.</summary>
    public PausedSandbox? Paused { get; set; }

    /// <summary>The paused disk layers this sandbox made, oldest first (each over the previous one).</summary>
    public List<Guid> Layers { get; } = [];

    public ConcurrentDictionary<int, ServiceCommand> Commands { get; } = new();

    /// <summary>Held by pause, resume and delete.</summary>
    public SemaphoreSlim Transition { get; } = new(1, 1);

    public string State => Paused is not null ? "paused" : "running";

    public bool IsDeleted
    {
        get
        {
            lock (_gate)
            {
                return _deleted;
            }
        }
    }

    /// <summary>Starts a command or file operation: 409 unless the sandbox is running and not pausing.</summary>
    public Operation BeginOperation()
    {
        lock (_gate)
        {
            if (_deleted)
            {
                throw new VesselException(VesselErrorReason.NotFound, $"Sandbox {Id} was deleted.");
            }
            if (Paused is not null || Live is null)
            {
                throw new VesselException(VesselErrorReason.Conflict, $"Sandbox {Id} is paused: resume it (POST /sandboxes/{Id}/resume) first.");
            }
            if (_transition)
            {
                throw new VesselException(VesselErrorReason.Conflict, $"Sandbox {Id} is being paused or resumed: retry when that ends.");
            }
            _operations++;
            return new Operation(this);
        }
    }

    /// <summary>Marks a pause or resume (the caller holds <see cref="Transition"/>): 409 while an operation is in flight.</summary>
    public void BeginTransition(bool toPaused)
    {
        lock (_gate)
        {
            if (_deleted)
            {
                throw new VesselException(VesselErrorReason.NotFound, $"Sandbox {Id} was deleted.");
            }
            if (toPaused == (Paused is not null))
            {
                throw new VesselException(VesselErrorReason.Conflict, $"Sandbox {Id} is already {State}.");
            }
            if (_operations > 0)
            {
                throw new VesselException(VesselErrorReason.Conflict,
                    $"Sandbox {Id} has {_operations} command(s) or file transfer(s) in flight: pause it when they end (background commands do not count).");
            }
            _transition = true;
        }
    }

    public void EndTransition()
    {
        lock (_gate)
        {
            _transition = false;
        }
    }

    /// <summary>Marks the sandbox deleted; false when it already was.</summary>
    public bool MarkDeleted()
    {
        lock (_gate)
        {
            bool was = _deleted;
            _deleted = true;
            return !was;
        }
    }

    public SandboxInfo ToInfo() => new(Id, Template, State, StartedAt.UtcDateTime, EndAt.UtcDateTime, Metadata);

    /// <summary>Its row, owned by <paramref name="node"/> (the daemon that runs it).</summary>
    public SandboxRecord ToRecord(string node) => new(
        Id, Template, State, StartedAt, EndAt, TimeoutSeconds, AutoPause,
        JsonSerializer.Serialize(Metadata), JsonSerializer.Serialize(Env), JsonSerializer.Serialize(Layers),
        Paused?.Directory, Live?.WorkDirectory, node, Paused is null ? null : RemoteSnapshot);

    /// <summary>An operation in flight; disposing ends it.</summary>
    public sealed class Operation(ServiceSandbox owner) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0)
            {
                lock (owner._gate)
                {
                    owner._operations--;
                }
            }
        }
    }
}
