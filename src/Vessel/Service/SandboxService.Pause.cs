using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Vessel.Common;
using Vessel.Sandboxes;

namespace Vessel.Service;

internal sealed partial class SandboxService
{
    /// <summary>
    /// Pauses a running sandbox (docs/api.md, "pause"): command readers detach (the guest keeps the
    /// processes), the sandbox is snapshotted and its VM stops; the row then says paused. A failed
    /// pause has already stopped the VM, so the sandbox is removed and the error reported.
    /// </summary>
    public Task<SandboxInfo> PauseAsync(string id, CancellationToken cancellationToken) =>
        TransitionAsync(id, toPaused: true, sandbox => PauseLockedAsync(sandbox, cancellationToken), cancellationToken);

    /// <summary>
    /// Runs <paramref name="body"/> as sandbox <paramref name="id"/>'s one transition (a pause or
    /// resume asked while another runs is a conflict) and returns the sandbox's info after it.
    /// </summary>
    private async Task<SandboxInfo> TransitionAsync(string id, bool toPaused, Func<ServiceSandbox, Task> body, CancellationToken cancellationToken)
    {
        ServiceSandbox sandbox = Find(id);
        if (sandbox.Pod?.Spec.Rootfs == PodRootfsMode.Virtiofs)
        {
            throw Sandbox.VirtioFsPauseRefused(id); // before anything stops: the pod keeps running
        }
        if (!await sandbox.Transition.WaitAsync(0, cancellationToken))
        {
            throw new VesselException(VesselErrorReason.Conflict, $"Sandbox {id} is being paused, resumed or deleted: retry when that ends.");
        }
        try
        {
            sandbox.BeginTransition(toPaused);
            try
            {
                await body(sandbox);
            }
            finally
            {
                sandbox.EndTransition();
            }
            return sandbox.ToInfo();
        }
        finally
        {
            sandbox.Transition.Release();
        }
    }

    private async Task PauseLockedAsync(ServiceSandbox sandbox, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        Sandbox live = sandbox.Live!;
        foreach (ServiceCommand c in sandbox.Commands.Values)
        {
            await c.DetachAsync();
        }
        string directory = Path.Combine(_options.PausedDirectory, $"{sandbox.Id}-{sandbox.Layers.Count + 1}");
        // The layer and snapshot exist before the row names them: 'vessel gc' waits for this pause.
        using GcLock gcHeld = await GcLock.SharedAsync(_options.Home, null, CancellationToken.None);
        var layer = Guid.NewGuid();
        string intent = await WritePauseIntentAsync(directory, layer);
        PausedSandbox paused;
        try
        {
            // Not the request's token: a pause half done is a lost sandbox.
            paused = await live.PauseAsync(directory, _layers, layer, CancellationToken.None);
        }
        catch (Exception e) when (e is VesselException or IOException or TimeoutException)
        {
            Log.PauseFailed(_logger, e, sandbox.Id);
            sandbox.MarkDeleted();
            _sandboxes.TryRemove(sandbox.Id, out _);
            sandbox.Live = null;
            await MarkLostAsync(sandbox.Id, sandbox.Template, $"its pause failed, which stops the VM: {e.Message}");
            await RemoveAsync(sandbox);
            File.Delete(intent);
            throw new VesselException(VesselErrorReason.ToolFailed, $"Pausing sandbox {sandbox.Id} failed and the sandbox was stopped: {e.Message}", e);
        }
        await SaveNetworkAsync(sandbox, paused.Directory, CancellationToken.None);
        CrashPoint(CrashAfterPauseExport);
        if (paused.Layer != Guid.Empty)
        {
            sandbox.Layers.Add(paused.Layer); // a pod has none: its uppers are in the saved RAM
        }
        sandbox.Live = null;
        sandbox.Paused = paused;
        await SaveCommandsAsync(sandbox, paused.Directory);
        sandbox.RemoteSnapshot = await UploadPauseAsync(sandbox, paused);
        await _state.PutSandboxAsync(sandbox.ToRecord(_options.Node), CancellationToken.None);
        File.Delete(intent);
        Log.Paused(_logger, sandbox.Id, clock.ElapsedMilliseconds);
    }

    /// <summary>Resumes a paused sandbox; its timeout clock restarts (with <paramref name="timeoutSeconds"/> when given).</summary>
    public async Task<SandboxInfo> ResumeAsync(string id, int? timeoutSeconds, CancellationToken cancellationToken)
    {
        int? timeout = timeoutSeconds is null ? null : CheckTimeout(timeoutSeconds);
        if (!Serves(id) && Bucket is not null)
        {
            await TakeOverAsync(id, cancellationToken); // paused on another node, its snapshot in the bucket
        }
        return await TransitionAsync(id, toPaused: false, sandbox => ResumeLockedAsync(sandbox, timeout, cancellationToken), cancellationToken);
    }

    private async Task ResumeLockedAsync(ServiceSandbox sandbox, int? timeout, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        PausedSandbox paused = sandbox.Paused!;
        string? remote = await ClaimRemoteAsync(sandbox, cancellationToken);
        Sandbox live;
        try
        {
            live = await _manager.ResumeAsync(_layers, paused, new SandboxOptions { Acceleration = _options.Acceleration, Network = sandbox.Network }, cancellationToken);
        }
        catch when (remote is not null)
        {
            sandbox.RemoteSnapshot = remote; // still paused: resumable from the bucket again, here or elsewhere
            await _state.PutSandboxAsync(sandbox.ToRecord(_options.Node), CancellationToken.None);
            throw;
        }
        sandbox.Live = live;
        await RestorePortsAsync(sandbox, live, cancellationToken);
        sandbox.Paused = null;
        if (timeout is { } t)
        {
            sandbox.TimeoutSeconds = t;
        }
        sandbox.EndAt = Time.GetUtcNow().AddSeconds(sandbox.TimeoutSeconds);
        await _state.PutSandboxAsync(sandbox.ToRecord(_options.Node), CancellationToken.None);
        // The RAM is loaded: the snapshot is no longer needed (a memory file stays mapped by QEMU even unlinked).
        SandboxManager.DeleteDirectory(paused.Directory);
        await DeleteRemoteFilesAsync(sandbox.Id, remote);
        foreach (ServiceCommand c in sandbox.Commands.Values)
        {
            await c.AttachAsync(live.Agent, Time, cancellationToken);
        }
        Log.Resumed(_logger, sandbox.Id, clock.ElapsedMilliseconds);
    }

    /// <summary>Kills (or pauses, with autoPause) running sandboxes past their end; drops finished commands' output after a while.</summary>
    private async Task EnforceTimeoutsAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_options.TimeoutCheckInterval, Time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                DateTimeOffset now = Time.GetUtcNow();
                foreach (ServiceSandbox s in _sandboxes.Values)
                {
                    DropFinishedCommands(s, now);
                    if (s.Live is null || s.IsDeleted || s.EndAt > now)
                    {
                        continue;
                    }
                    if (!s.AutoPause)
                    {
                        await DeleteQuietlyAsync(s.Id, "timeout");
                        continue;
                    }
                    try
                    {
                        await PauseAsync(s.Id, cancellationToken);
                    }
                    catch (VesselException e) when (e.Reason == VesselErrorReason.Conflict)
                    {
                        Log.AutoPauseRetry(_logger, e, s.Id);
                    }
                    catch (VesselException e)
                    {
                        Log.CleanupFailed(_logger, e, s.Id);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Output of an exited command stays readable for a minute (docs/api.md).</summary>
    private static void DropFinishedCommands(ServiceSandbox sandbox, DateTimeOffset now)
    {
        foreach (ServiceCommand c in sandbox.Commands.Values)
        {
            if (c.EndedAt is { } ended && now - ended > TimeSpan.FromSeconds(60))
            {
                sandbox.Commands.TryRemove(c.Pid, out _);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(7002, LogLevel.Information, "Sandbox {SandboxId} paused in {Milliseconds} ms")]
        public static partial void Paused(ILogger logger, string sandboxId, long milliseconds);

        [LoggerMessage(7003, LogLevel.Information, "Sandbox {SandboxId} resumed in {Milliseconds} ms")]
        public static partial void Resumed(ILogger logger, string sandboxId, long milliseconds);

        [LoggerMessage(7007, LogLevel.Warning, "Sandbox {SandboxId} reached its timeout and could not be paused: retrying")]
        public static partial void AutoPauseRetry(ILogger logger, Exception exception, string sandboxId);

        [LoggerMessage(7009, LogLevel.Error, "Sandbox {SandboxId}: pause failed, the sandbox is lost")]
        public static partial void PauseFailed(ILogger logger, Exception exception, string sandboxId);
    }
}
