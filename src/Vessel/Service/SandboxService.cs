using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.Sandboxes;
using Vessel.State;
using Vessel.Templates;
using Vessel.Vmm;

namespace Vessel.Service;

/// <summary>Where the daemon keeps things and how it runs VMs.</summary>
internal sealed record SandboxServiceOptions(VesselHome Home)
{
    public Acceleration Acceleration { get; init; } = Acceleration.Auto;

    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>The network of a sandbox whose create request names none (VESSEL_OUTBOUND; default: outbound on).</summary>
    public NetworkConfig DefaultNetwork { get; init; } = NetworkConfig.Default;

    /// <summary>How often timeouts are checked.</summary>
    public TimeSpan TimeoutCheckInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Paused sandboxes' snapshots live beside the templates' (<see cref="VesselHome.Snapshots"/>), named after the sandbox.</summary>
    public string PausedDirectory => Home.Snapshots;

    /// <summary>The node this daemon is (docs/cluster.md): its rows name it, and at start it takes over only its own rows (and those of no node).</summary>
    public string Node { get; init; } = Environment.MachineName;

    /// <summary>Whether this daemon is a node of a cluster (<c>vessel serve --cluster</c>): a pause then goes to the bucket too, when one is set, and the list is every node's.</summary>
    public bool Clustered { get; init; }

    /// <summary>A test seam: the daemon kills itself (like kill -9) at this point (<see cref="SandboxService.CrashAfterPauseExport"/>); null in real use.</summary>
    public string? TestCrashPoint { get; init; }
}

/// <summary>
/// The sandbox registry behind <c>vessel serve</c> (docs/api.md), with no HTTP in it: create from
/// a template, list, delete, timeouts (kill, or pause with autoPause), pause/resume, commands and
/// files. Every sandbox is a row in <see cref="StateStore"/>; paused ones survive the daemon.
/// One instance per home (the caller holds the home's lock).
/// </summary>
internal sealed partial class SandboxService : IAsyncDisposable
{
    public const int DefaultTimeoutSeconds = 300;
    public const int MaxTimeoutSeconds = 24 * 60 * 60;
    private const int MaxMetadataEntries = 64;

    private readonly SandboxServiceOptions _options;
    private readonly SandboxManager _manager;
    private readonly LayerStore _layers;
    private readonly StateStore _state;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, ServiceSandbox> _sandboxes = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private Task _timeouts = Task.CompletedTask;

    public SandboxService(SandboxServiceOptions options, SandboxManager manager, LayerStore layers, StateStore state, ILogger? logger = null)
    {
        _options = options;
        _manager = manager;
        _layers = layers;
        _state = state;
        _logger = logger ?? NullLogger.Instance;
    }

    public StateStore State => _state;

    /// <summary>The node this daemon is (<see cref="SandboxServiceOptions.Node"/>).</summary>
    public string Node => _options.Node;

    /// <summary>How many sandboxes run a VM here now (a cluster node's heartbeat).</summary>
    public int RunningCount => _sandboxes.Values.Count(s => !s.IsDeleted && s.Live is not null);

    /// <summary>Whether this daemon serves sandbox <paramref name="id"/> (running or paused here).</summary>
    public bool Serves(string id) => _sandboxes.TryGetValue(id, out ServiceSandbox? s) && !s.IsDeleted;

    /// <summary>The layer store of this daemon (what builds its home holds, for placement).</summary>
    public LayerStore Layers => _layers;

    private TimeProvider Time => _options.Time;

    /// <summary>
    /// Takes over what a previous daemon of this node left: its running sandboxes' VMs are stopped and removed
    /// (their disks were served by that daemon), paused ones are kept; then starts the timeout clock.
    /// Rows of other nodes of a shared database are theirs (docs/cluster.md).
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_options.PausedDirectory);
        IReadOnlyList<string> swept = await SandboxManager.SweepDirectoryAsync(_options.Home.Root, cancellationToken);
        if (swept.Count > 0)
        {
            Log.Swept(_logger, string.Join(' ', swept));
        }
        var keep = new HashSet<string>(StringComparer.Ordinal);
        IReadOnlyList<SandboxRecord> records = await _state.ListSandboxesAsync(_options.Node, cancellationToken);
        await RecoverAsync(records, cancellationToken);
        foreach (SandboxRecord record in records)
        {
            ServiceSandbox? adopted = null;
            string? damaged = null;
            try
            {
                adopted = record.State == "paused" ? await TryAdoptPausedAsync(record, cancellationToken) : null;
            }
            catch (VesselException e) when (e.Reason == VesselErrorReason.InvalidInput)
            {
                damaged = e.Message;
            }
            if (adopted is null)
            {
                Log.RunningDropped(_logger, record.Id);
                await MarkLostAsync(record.Id, record.Template, record.State != "paused" ? RunningLostReason(Time.GetUtcNow())
                    : damaged ?? $"it was paused, but its snapshot {record.SnapshotDirectory} was missing when the daemon started.");
                await DeleteLayersAsync(record.Id, JsonSerializer.Deserialize<List<Guid>>(record.LayersJson) ?? []);
                await _state.DeleteSandboxAsync(record.Id);
                continue;
            }
            keep.Add(Path.GetFileName(adopted.Paused!.Directory));
            _sandboxes[adopted.Id] = adopted;
            Log.PausedAdopted(_logger, adopted.Id);
        }
        // A pause that a crash interrupted left a directory no row names.
        foreach (string dir in Directory.EnumerateDirectories(_options.PausedDirectory, "sbx-*"))
        {
            if (!keep.Contains(Path.GetFileName(dir)))
            {
                SandboxManager.DeleteDirectory(dir);
            }
        }
        _timeouts = Task.Run(() => EnforceTimeoutsAsync(_stopping.Token), CancellationToken.None);
    }

    private async Task<ServiceSandbox?> TryAdoptPausedAsync(SandboxRecord record, CancellationToken cancellationToken)
    {
        List<Guid> layers = JsonSerializer.Deserialize<List<Guid>>(record.LayersJson) ?? [];
        if (record.SnapshotDirectory is not { } dir || !Directory.Exists(dir))
        {
            return null;
        }
        // A paused pod has no disk layer: its description beside the snapshot names its containers and image disks.
        PodInfo? pod = layers.Count == 0 ? await PausedPod.ReadAsync(dir, _options.Home.Images, cancellationToken) : null;
        if (layers.Count == 0 && pod is null)
        {
            return null;
        }
        TemplateRecord? template = await _state.GetTemplateAsync(record.Template, cancellationToken);
        TemplateConfig config = template is null ? new TemplateConfig() : TemplateConfig.FromJson(template.ConfigJson, $"template '{template.Name}'");
        var ports = new Dictionary<int, int>();
        NetworkConfig network = await LoadNetworkAsync(dir, ports, cancellationToken);
        var sandbox = new ServiceSandbox(record.Id, record.Template, config, record.StartedAt, record.TimeoutSeconds, record.AutoPause,
            JsonSerializer.Deserialize<Dictionary<string, string>>(record.MetadataJson) ?? [],
            JsonSerializer.Deserialize<Dictionary<string, string>>(record.EnvJson) ?? [])
        {
            EndAt = record.EndAt,
            Paused = new PausedSandbox(dir, pod is null ? layers[^1] : Guid.Empty, await SandboxSnapshot.ReadAsync(dir, cancellationToken)) { Pod = pod },
            Network = network,
            Pod = pod,
        };
        sandbox.Layers.AddRange(layers);
        foreach ((int guest, int host) in ports)
        {
            sandbox.Ports[guest] = host;
        }
        await LoadCommandsAsync(sandbox, dir, cancellationToken);
        return sandbox;
    }

    public async Task<SandboxInfo> CreateAsync(CreateSandboxRequest request, CancellationToken cancellationToken)
    {
        if (request.Containers is not null)
        {
            return await CreatePodAsync(request, cancellationToken);
        }
        if (string.IsNullOrWhiteSpace(request.Template))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "template: the name of a built template is required (GET /templates lists them).");
        }
        int timeout = CheckCreate(request);
        TemplateRecord template = await _state.GetTemplateAsync(request.Template, cancellationToken)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"There is no template named '{request.Template}' (GET /templates lists them).");
        TemplateConfig config = TemplateConfig.FromJson(template.ConfigJson, $"template '{template.Name}'");
        NetworkConfig network = ToNetwork(request.Network);
        var clock = Stopwatch.StartNew();
        Sandbox live = await _manager.CreateFromTemplateAsync(_layers, template, new SandboxOptions { Pausable = true, Acceleration = _options.Acceleration, Network = network }, restore: true, cancellationToken);
        ServiceSandbox sandbox = NewSandbox(request, template.Name, config, timeout, live, network);
        await AddAsync(sandbox, template.Name, clock, cancellationToken);
        return sandbox.ToInfo();
    }

    /// <summary>The checks every create request gets (its timeout, metadata and environment); returns the timeout in seconds.</summary>
    private static int CheckCreate(CreateSandboxRequest request)
    {
        int timeout = CheckTimeout(request.TimeoutSeconds);
        if (request.Metadata is { Count: > MaxMetadataEntries })
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"metadata: at most {MaxMetadataEntries} entries, got {request.Metadata.Count}.");
        }
        CheckNoNulls("metadata", request.Metadata);
        CheckNoNulls("env", request.Env);
        return timeout;
    }

    private ServiceSandbox NewSandbox(CreateSandboxRequest request, string template, TemplateConfig config, int timeout, Sandbox live, NetworkConfig? network = null) =>
        new(NewId(), template, config, Time.GetUtcNow(), timeout, request.AutoPause ?? false,
            new Dictionary<string, string>(request.Metadata ?? [], StringComparer.Ordinal), new Dictionary<string, string>(request.Env ?? [], StringComparer.Ordinal))
        {
            Live = live,
            Network = network ?? NetworkConfig.Default,
            Pod = live.Pod,
        };

    /// <summary>Records a new sandbox (its VM is killed when the record cannot be written), then serves it.</summary>
    private async Task AddAsync(ServiceSandbox sandbox, string logName, Stopwatch clock, CancellationToken cancellationToken)
    {
        Sandbox live = sandbox.Live!;
        try
        {
            await _state.PutSandboxAsync(sandbox.ToRecord(_options.Node), cancellationToken);
        }
        catch
        {
            await live.KillAsync();
            throw;
        }
        _sandboxes[sandbox.Id] = sandbox;
        Log.Created(_logger, sandbox.Id, logName, clock.ElapsedMilliseconds, (long)live.Timings.AgentReady.TotalMilliseconds, live.Timings.Restored);
    }

    public SandboxInfo Get(string id) => Find(id).ToInfo();

    /// <summary>Sandboxes matching <paramref name="state"/> (null: any) and every metadata pair.</summary>
    public IReadOnlyList<SandboxInfo> List(string? state, IReadOnlyDictionary<string, string> metadata)
    {
        if (state is not (null or "running" or "paused"))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"state: '{state}' is not running or paused.");
        }
        return _sandboxes.Values
            .Where(s => !s.IsDeleted && (state is null || s.State == state) && metadata.All(m => s.Metadata.TryGetValue(m.Key, out string? v) && v == m.Value))
            .OrderBy(s => s.StartedAt)
            .Select(s => s.ToInfo())
            .ToList();
    }

    /// <summary>
    /// <see cref="List"/>, and on a cluster every node's sandboxes: the rows of the shared state, each
    /// with its node (those this node serves as it knows them, pods' containers included).
    /// </summary>
    public async Task<IReadOnlyList<SandboxInfo>> ListAsync(string? state, IReadOnlyDictionary<string, string> metadata, CancellationToken cancellationToken)
    {
        IReadOnlyList<SandboxInfo> here = List(state, metadata);
        if (!_options.Clustered)
        {
            return here;
        }
        var local = here.ToDictionary(i => i.SandboxId, StringComparer.Ordinal);
        var all = new List<SandboxInfo>();
        foreach (SandboxRecord row in await _state.ListSandboxesAsync(cancellationToken))
        {
            if (local.TryGetValue(row.Id, out SandboxInfo? mine))
            {
                all.Add(mine with { Node = _options.Node });
                continue;
            }
            var rowMetadata = JsonSerializer.Deserialize<Dictionary<string, string>>(row.MetadataJson) ?? [];
            if (!Serves(row.Id) && (state is null || row.State == state) && metadata.All(m => rowMetadata.TryGetValue(m.Key, out string? v) && v == m.Value))
            {
                all.Add(InfoOf(row));
            }
        }
        return all;
    }

    /// <summary>A sandbox as its row describes it (another node's, on a cluster).</summary>
    public static SandboxInfo InfoOf(SandboxRecord row)
        => new(row.Id, row.Template, row.State, row.StartedAt.UtcDateTime, row.EndAt.UtcDateTime,
            JsonSerializer.Deserialize<Dictionary<string, string>>(row.MetadataJson) ?? [])
        { Node = row.Node };

    public async Task<SandboxInfo> SetTimeoutAsync(string id, int? timeoutSeconds, CancellationToken cancellationToken)
    {
        int timeout = CheckTimeout(timeoutSeconds ?? throw new VesselException(VesselErrorReason.InvalidInput, "timeoutSeconds is required."));
        ServiceSandbox sandbox = Find(id);
        sandbox.TimeoutSeconds = timeout;
        sandbox.EndAt = Time.GetUtcNow().AddSeconds(timeout);
        await _state.PutSandboxAsync(sandbox.ToRecord(_options.Node), cancellationToken);
        return sandbox.ToInfo();
    }

    /// <summary>Kills the sandbox (or drops its snapshot) and removes its layers and row.</summary>
    public async Task DeleteAsync(string id, string why)
    {
        ServiceSandbox sandbox = Find(id);
        await sandbox.Transition.WaitAsync();
        try
        {
            if (!sandbox.MarkDeleted())
            {
                throw new VesselException(VesselErrorReason.NotFound, $"Sandbox {id} was deleted.");
            }
            _sandboxes.TryRemove(id, out _);
            await RemoveAsync(sandbox);
            Log.Deleted(_logger, id, why);
        }
        finally
        {
            sandbox.Transition.Release();
        }
    }

    private async Task RemoveAsync(ServiceSandbox sandbox)
    {
        try
        {
            if (sandbox.Live is { } live)
            {
                await live.KillAsync();
                foreach (ServiceCommand c in sandbox.Commands.Values)
                {
                    await c.DetachAsync();
                }
            }
            if (sandbox.Paused is { } paused)
            {
                SandboxManager.DeleteDirectory(paused.Directory);
            }
            if (Bucket is not null)
            {
                await DeleteFromBucketAsync(sandbox);
                await DeleteLocalCopiesAsync(sandbox.Id, sandbox.Layers);
            }
            else
            {
                await DeleteLayersAsync(sandbox.Id, sandbox.Layers);
            }
        }
        finally
        {
            await _state.DeleteSandboxAsync(sandbox.Id);
        }
    }

    private async Task DeleteLayersAsync(string id, IReadOnlyList<Guid> layers)
    {
        // Newest first: each paused layer's mapping names the one before it.
        for (int i = layers.Count - 1; i >= 0; i--)
        {
            try
            {
                await _layers.DeleteAsync(layers[i], CancellationToken.None);
            }
            catch (Exception e) when (e is VesselException or IOException)
            {
                Log.CleanupFailed(_logger, e, id);
            }
        }
    }

    private ServiceSandbox Find(string id)
        => _sandboxes.TryGetValue(id, out ServiceSandbox? s) && !s.IsDeleted
            ? s
            : throw NotFound(id);

    private static int CheckTimeout(int? seconds)
    {
        int t = seconds ?? DefaultTimeoutSeconds;
        return t is >= 1 and <= MaxTimeoutSeconds
            ? t
            : throw new VesselException(VesselErrorReason.InvalidInput, $"timeoutSeconds: {t} is outside 1 to {MaxTimeoutSeconds} (24 h).");
    }

    private static void CheckNoNulls(string field, Dictionary<string, string>? map)
    {
        if (map?.FirstOrDefault(p => p.Value is null || p.Key.Length == 0 || p.Key.Contains('\0', StringComparison.Ordinal) || p.Value.Contains('\0', StringComparison.Ordinal)) is { Key: not null } bad)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{field}: entry '{bad.Key}' has an empty key, a null value or a NUL character.");
        }
    }

    private static string NewId() => "sbx-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    /// <summary>Running sandboxes cannot outlive the daemon (it serves their disks): stop them and drop their rows; paused ones stay.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _timeouts;
        ServiceSandbox[] running = _sandboxes.Values.Where(s => s.Live is not null).ToArray();
        await Task.WhenAll(running.Select(s => MarkLostAsync(s.Id, s.Template,
            "it was running when the daemon was stopped; a running sandbox's disk is served by the daemon, so its VM was stopped and removed (pause sandboxes before stopping the daemon to keep them).")));
        await Task.WhenAll(running.Select(s => DeleteQuietlyAsync(s.Id, "the daemon stopped")));
        await WaitForBuildsAsync();
        _stopping.Dispose();
        _takeovers.Dispose();
    }

    private async Task DeleteQuietlyAsync(string id, string why)
    {
        try
        {
            await DeleteAsync(id, why);
        }
        catch (Exception e) when (e is VesselException or IOException)
        {
            Log.CleanupFailed(_logger, e, id);
        }
    }

    /// <summary>Log messages of the sandbox daemon (event ids 7000-7099, port forwards 7050-7059), each in the file of the concern that logs it.</summary>
    private static partial class Log
    {
        [LoggerMessage(7000, LogLevel.Information, "Sandbox {SandboxId} created from template '{Template}' in {Milliseconds} ms, agent ready {AgentReady} ms (restored: {Restored})")]
        public static partial void Created(ILogger logger, string sandboxId, string template, long milliseconds, long agentReady, bool restored);

        [LoggerMessage(7001, LogLevel.Information, "Sandbox {SandboxId} deleted ({Why})")]
        public static partial void Deleted(ILogger logger, string sandboxId, string why);

        [LoggerMessage(7004, LogLevel.Warning, "Sandbox {SandboxId} was running when the previous daemon stopped: its VM could not outlive the daemon's disk server, so it was stopped and removed")]
        public static partial void RunningDropped(ILogger logger, string sandboxId);

        [LoggerMessage(7005, LogLevel.Information, "Sandbox {SandboxId} is paused and was kept across the daemon restart")]
        public static partial void PausedAdopted(ILogger logger, string sandboxId);

        [LoggerMessage(7006, LogLevel.Error, "Sandbox {SandboxId}: cleanup failed")]
        public static partial void CleanupFailed(ILogger logger, Exception exception, string sandboxId);

        [LoggerMessage(7008, LogLevel.Warning, "Removed leftovers of crashed runs: {Leftovers}")]
        public static partial void Swept(ILogger logger, string leftovers);
    }
}
