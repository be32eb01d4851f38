using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Vessel.Sandboxes;
using Vessel.State;
using Vessel.Templates;

namespace Vessel.Service;

internal sealed partial class SandboxService
{
    private readonly ConcurrentDictionary<string, TemplateBuildJob> _builds = new(StringComparer.Ordinal);
    private int _nextBuild;

    public async Task<IReadOnlyList<TemplateInfo>> ListTemplatesAsync(CancellationToken cancellationToken)
        => (await _state.ListTemplatesAsync(cancellationToken)).Select(ToInfo).ToList();

    public async Task<TemplateInfo> GetTemplateAsync(string name, CancellationToken cancellationToken)
        => ToInfo(await _state.GetTemplateAsync(name, cancellationToken)
            ?? throw new VesselException(VesselErrorReason.NotFound, $"There is no template named '{name}' (GET /templates lists them)."));

    /// <summary>Removes a template's name (its layers stay for the cache, as with <c>vessel template rm</c>); 409 while a sandbox uses it.</summary>
    public async Task DeleteTemplateAsync(string name, CancellationToken cancellationToken)
    {
        if (_sandboxes.Values.FirstOrDefault(s => s.Template == name && !s.IsDeleted) is { } user)
        {
            throw new VesselException(VesselErrorReason.Conflict, $"Template '{name}' is used by sandbox {user.Id} ({user.State}): delete its sandboxes first.");
        }
        if (!await _state.DeleteTemplateAsync(name, cancellationToken))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"There is no template named '{name}' (GET /templates lists them).");
        }
    }

    /// <summary>
    /// Starts building a template in the daemon; returns its build id at once. With
    /// <paramref name="allowHostPaths"/> false (a TCP client) the spec may not read the daemon's
    /// files: no COPY step, and the base must be a registry image or a template.
    /// </summary>
    public string StartTemplateBuild(string specJson, bool allowHostPaths)
    {
        TemplateSpec spec = TemplateSpecReader.Parse(specJson, "the request body", _options.Home.Root);
        if (!allowHostPaths)
        {
            if (spec.Steps.Any(s => s.Kind == StepKind.Copy))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "steps: COPY reads the daemon's files and is refused over TCP; use the unix socket, or write files into a sandbox.");
            }
            if (spec.FromImage is { } image && !image.StartsWith("docker://", StringComparison.Ordinal))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"from: '{image}' names a file on the daemon's machine, refused over TCP; use a docker:// reference or a template.");
            }
        }
        string id = Interlocked.Increment(ref _nextBuild).ToString(CultureInfo.InvariantCulture);
        var job = new TemplateBuildJob(id, spec.Name, Time.GetUtcNow());
        _builds[id] = job;
        job.Task = Task.Run(() => RunBuildAsync(job, spec, _stopping.Token), CancellationToken.None);
        return id;
    }

    public BuildInfo GetBuild(string id) => FindBuild(id).ToInfo();

    public CommandOutput GetBuildLog(string id) => FindBuild(id).Log;

    private TemplateBuildJob FindBuild(string id)
        => _builds.TryGetValue(id, out TemplateBuildJob? job)
            ? job
            : throw new VesselException(VesselErrorReason.NotFound, $"There is no build '{id}' in this daemon (build ids are kept until it stops).");

    private async Task RunBuildAsync(TemplateBuildJob job, TemplateSpec spec, CancellationToken cancellationToken)
    {
        var runner = new SandboxStepRunner(_manager) { Acceleration = _options.Acceleration };
        var builder = new TemplateBuilder(_state, _layers, runner, _options.Home.Root);
        var progress = new SyncProgress(e => job.Log.AddData(CommandEventKind.Stdout, Encoding.UTF8.GetBytes(e.Describe() + "\n")));
        try
        {
            TemplateBuildResult result = await builder.BuildAsync(spec, new TemplateBuildOptions(), progress, cancellationToken);
            job.Log.AddData(CommandEventKind.Stdout, Encoding.UTF8.GetBytes($"built '{result.Name}' in {result.Elapsed.TotalSeconds:0.00} s: layer {result.LayerBuildId}\n"));
            job.Finish("succeeded", null, Time.GetUtcNow());
        }
        catch (Exception e) when (e is VesselException or IOException or InvalidDataException or TimeoutException or OperationCanceledException)
        {
            job.Log.AddData(CommandEventKind.Stderr, Encoding.UTF8.GetBytes($"build failed: {e.Message}\n"));
            job.Finish("failed", e.Message, Time.GetUtcNow());
        }
        Log.BuildEnded(_logger, job.Id, job.Template, job.Status);
    }

    private async Task WaitForBuildsAsync()
    {
        foreach (TemplateBuildJob job in _builds.Values)
        {
            await job.Task;
        }
    }

    private static TemplateInfo ToInfo(TemplateRecord t)
    {
        TemplateConfig config = TemplateConfig.FromJson(t.ConfigJson, $"template '{t.Name}'");
        return new TemplateInfo(t.Name, t.BuiltAt.UtcDateTime, t.DiskSizeBytes, t.SnapshotDirectory is { } d && Directory.Exists(d), config.Cpu, config.MemoryMb, t.FinalHash);
    }

    /// <summary>IProgress that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool and could reorder lines).</summary>
    private sealed class SyncProgress(Action<BuildEvent> report) : IProgress<BuildEvent>
    {
        public void Report(BuildEvent value) => report(value);
    }

    /// <summary>A template build the daemon runs: its log (bounded like command output) and how it ended.</summary>
    private sealed class TemplateBuildJob(string id, string template, DateTimeOffset startedAt)
    {
        public string Id => id;

        public string Template => template;

        public CommandOutput Log { get; } = new();

        public Task Task { get; set; } = Task.CompletedTask;

        public string Status { get; private set; } = "building";

        public string? Error { get; private set; }

        public DateTimeOffset? FinishedAt { get; private set; }

        public void Finish(string status, string? error, DateTimeOffset now)
        {
            Error = error;
            FinishedAt = now;
            Status = status;
            Log.Complete(status == "succeeded" ? 0 : 1, 0, false);
        }

        public BuildInfo ToInfo() => new(id, template, Status, startedAt.UtcDateTime, FinishedAt?.UtcDateTime, Error);
    }

    private static partial class Log
    {
        [LoggerMessage(7010, LogLevel.Information, "Template build {BuildId} of '{Template}' ended: {Status}")]
        public static partial void BuildEnded(ILogger logger, string buildId, string template, string status);
    }
}
