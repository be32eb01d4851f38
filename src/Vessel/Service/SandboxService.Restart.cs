using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Vessel.Sandboxes;
using Vessel.State;

namespace Vessel.Service;

internal sealed partial class SandboxService
{
    /// <summary>How long a lost sandbox is remembered (docs/api.md, "Daemon restarts").</summary>
    public static readonly TimeSpan LostRetention = TimeSpan.FromDays(1);

    /// <summary>The crash point of <see cref="SandboxServiceOptions.TestCrashPoint"/> between a pause's layer export and its row.</summary>
    public const string CrashAfterPauseExport = "after-pause-export";

    private const string PauseIntentSuffix = ".layer";

    private readonly ConcurrentDictionary<string, LostSandboxRecord> _lost = new(StringComparer.Ordinal);

    /// <summary>
    /// Reads the lost sandboxes still remembered, then reclaims what pauses interrupted by a crash
    /// left: a pause records the id of the layer it is about to export in
    /// <c>snapshots/ID-N.layer</c> before exporting it, and removes that file once the sandbox's row
    /// names the layer; a file still there names a layer no row may hold.
    /// </summary>
    private async Task RecoverAsync(IReadOnlyList<SandboxRecord> records, CancellationToken cancellationToken)
    {
        foreach (LostSandboxRecord lost in await _state.ListLostSandboxesAsync(Time.GetUtcNow() - LostRetention, cancellationToken))
        {
            _lost[lost.Id] = lost;
        }
        var named = records.SelectMany(r => JsonSerializer.Deserialize<List<Guid>>(r.LayersJson) ?? []).ToHashSet();
        foreach (string intent in Directory.EnumerateFiles(_options.PausedDirectory, "sbx-*" + PauseIntentSuffix))
        {
            if (Guid.TryParse(await File.ReadAllTextAsync(intent, cancellationToken), out Guid layer) && !named.Contains(layer))
            {
                try
                {
                    await _layers.DeleteAsync(layer, CancellationToken.None);
                    Log.OrphanLayerReclaimed(_logger, layer, Path.GetFileName(intent));
                }
                catch (VesselException e) when (e.Reason == VesselErrorReason.NotFound)
                {
                    // The crash came before the export: there is nothing to reclaim.
                }
                catch (Exception e) when (e is VesselException or IOException)
                {
                    Log.CleanupFailed(_logger, e, Path.GetFileName(intent));
                }
            }
            File.Delete(intent);
        }
    }

    /// <summary>Records the layer a pause is about to export (see <see cref="RecoverAsync"/>); returns the record's path.</summary>
    private static async Task<string> WritePauseIntentAsync(string directory, Guid layer)
    {
        string path = directory + PauseIntentSuffix;
        await using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.WriteThrough))
        {
            await file.WriteAsync(System.Text.Encoding.ASCII.GetBytes(layer.ToString("D")));
            file.Flush(flushToDisk: true);
        }
        return path;
    }

    /// <summary>The test seam of <see cref="SandboxServiceOptions.TestCrashPoint"/>: dies like kill -9 at <paramref name="point"/>.</summary>
    private void CrashPoint(string point)
    {
        if (_options.TestCrashPoint == point)
        {
            Log.TestCrash(_logger, point);
            using Process self = Process.GetCurrentProcess();
            self.Kill();
            Thread.Sleep(Timeout.Infinite);
        }
    }

    /// <summary>
    /// Saves the sandbox's commands beside its snapshot, so that their pids, output and re-attach
    /// survive a daemon restart. A failure loses only that (logged): the snapshot itself is whole.
    /// </summary>
    private async Task SaveCommandsAsync(ServiceSandbox sandbox, string directory)
    {
        try
        {
            await ServiceCommand.WriteAllAsync(directory, sandbox.Commands.Values, CancellationToken.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.CleanupFailed(_logger, e, sandbox.Id);
        }
    }

    /// <summary>The commands a pause saved (see <see cref="SaveCommandsAsync"/>); unreadable ones are logged and dropped.</summary>
    private async Task LoadCommandsAsync(ServiceSandbox sandbox, string directory, CancellationToken cancellationToken)
    {
        try
        {
            foreach (ServiceCommand c in await ServiceCommand.ReadAllAsync(directory, cancellationToken))
            {
                sandbox.Commands[c.Pid] = c;
            }
        }
        catch (Exception e) when (e is VesselException or IOException)
        {
            Log.CleanupFailed(_logger, e, sandbox.Id);
        }
    }

    /// <summary>Remembers that <paramref name="sandbox"/> is gone and why, so that a client asking for it is told (404 with the reason).</summary>
    private async Task MarkLostAsync(string id, string template, string reason)
    {
        var lost = new LostSandboxRecord(id, template, Time.GetUtcNow(), reason);
        _lost[id] = lost;
        try
        {
            await _state.PutLostSandboxAsync(lost);
        }
        catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
        {
            Log.CleanupFailed(_logger, e, id);
        }
    }

    /// <summary>The 404 for an id: unknown, or lost with its reason.</summary>
    private VesselException NotFound(string id)
        => _lost.TryGetValue(id, out LostSandboxRecord? lost)
            ? Lost(lost)
            : new VesselException(VesselErrorReason.NotFound, $"There is no sandbox '{id}' (GET /sandboxes lists them).");

    /// <summary>The 404 for a lost sandbox, with when and why (also what a cluster node answers for a sandbox another node lost).</summary>
    public static VesselException Lost(LostSandboxRecord lost)
        => new(VesselErrorReason.NotFound, $"Sandbox {lost.Id} is gone since {lost.LostAt.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}: {lost.Reason}");

    private static string RunningLostReason(DateTimeOffset now)
        => $"it was running when the daemon serving its disk stopped (found by the daemon started at {now.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}). " +
           "A running sandbox's disk is served by the daemon, so its VM cannot outlive it: the VM was stopped and its disk and files removed. " +
           "Pause sandboxes before stopping the daemon to keep them (docs/api.md, \"Daemon restarts\").";

    private static partial class Log
    {
        [LoggerMessage(7011, LogLevel.Warning, "Reclaimed layer {Layer} of a pause a crash interrupted ({Intent})")]
        public static partial void OrphanLayerReclaimed(ILogger logger, Guid layer, string intent);

        [LoggerMessage(7012, LogLevel.Critical, "Test crash point '{Point}' reached: the daemon kills itself")]
        public static partial void TestCrash(ILogger logger, string point);
    }
}
