using System.Text.Json;
using Microsoft.Extensions.Logging;
using Vessel.Blocks;
using Vessel.Sandboxes;
using Vessel.State;

namespace Vessel.Service;

/// <summary>
/// Pause on one node, resume on another (docs/cluster.md, "Resume elsewhere"): on a cluster node
/// with a bucket, every pause is uploaded (<see cref="RemoteSnapshot"/>) and its row says so; a
/// node asked to resume a sandbox another node paused fetches the snapshot's files, moves the row
/// to itself (a compare-and-set: one node wins) and resumes, its disk read chunk by chunk from the
/// bucket; the node that paused it sees the row gone elsewhere and releases its local copy.
/// </summary>
internal sealed partial class SandboxService
{
    /// <summary>One take-over at a time on this node: two resumes of the same sandbox arriving here fetch it once.</summary>
    private readonly SemaphoreSlim _takeovers = new(1, 1);

    /// <summary>The cluster's bucket (the home's store is tiered over an <c>s3://</c> one) on a cluster node; else null.</summary>
    private S3LayerStorage? Bucket => _options.Clustered && _layers.Storage is TieredLayerStorage { Remote: S3LayerStorage bucket } ? bucket : null;

    /// <summary>The builds this home holds itself (not those it would read from the bucket): what placement prefers.</summary>
    public Task<IReadOnlyList<Guid>> LocalBuildsAsync(CancellationToken cancellationToken)
        => (_layers.Storage is TieredLayerStorage tiered ? tiered.Local : _layers.Storage).ListAsync(cancellationToken);

    /// <summary>Uploads a pause just taken; returns the row's <c>remote_snapshot</c>, or null (no bucket, a pod, or the upload failed: it stays resumable here).</summary>
    private async Task<string?> UploadPauseAsync(ServiceSandbox sandbox, PausedSandbox paused)
    {
        if (Bucket is not { } bucket || paused.Pod is not null)
        {
            return null;
        }
        try
        {
            (RemoteSnapshot snapshot, RemoteSnapshot.Transfer moved) = await RemoteSnapshot.UploadAsync(
                bucket, _layers, sandbox.Id, sandbox.Layers.Count, paused.Layer, paused.Directory, CancellationToken.None);
            Log.PauseUploaded(_logger, sandbox.Id, snapshot.Pause, (long)moved.Elapsed.TotalMilliseconds, moved.LayerBytes, moved.FileBytes, moved.FileSize);
            return snapshot.ToJson();
        }
        catch (Exception e) when (e is VesselException or IOException)
        {
            Log.PauseUploadFailed(_logger, e, sandbox.Id);
            return null;
        }
    }

    /// <summary>
    /// Makes sandbox <paramref name="id"/>, paused on another node with its snapshot in the bucket,
    /// this node's: its files fetched and checked, then the row moved here. Until the move, nothing
    /// changed: a failure leaves it paused where it was.
    /// </summary>
    private async Task TakeOverAsync(string id, CancellationToken cancellationToken)
    {
        await _takeovers.WaitAsync(cancellationToken);
        try
        {
            if (!Serves(id))
            {
                await TakeOverLockedAsync(id, cancellationToken);
            }
        }
        finally
        {
            _takeovers.Release();
        }
    }

    private async Task TakeOverLockedAsync(string id, CancellationToken cancellationToken)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        SandboxRecord row = await _state.GetSandboxAsync(id, cancellationToken)
            ?? (await _state.GetLostSandboxAsync(id, cancellationToken) is { } lost ? throw Lost(lost) : throw NotFound(id));
        if (row.State != "paused" || row.RemoteSnapshot is null || row.Node == _options.Node)
        {
            throw new VesselException(VesselErrorReason.Conflict,
                $"Sandbox {id} is {row.State} on node '{row.Node}'{(row.State == "paused" ? " and its snapshot is not in the bucket" : "")}: only its node can resume it.");
        }
        RemoteSnapshot remote = RemoteSnapshot.Parse(row.RemoteSnapshot, id);
        string directory = Path.Combine(_options.PausedDirectory, $"{id}-{remote.Pause}");
        RemoteSnapshot.Transfer fetched = await remote.FetchAsync(Bucket!, directory, cancellationToken);
        if (!await _state.TryMovePausedSandboxAsync(id, row.Node, row.RemoteSnapshot, _options.Node, row.RemoteSnapshot, cancellationToken))
        {
            SandboxManager.DeleteDirectory(directory);
            throw new VesselException(VesselErrorReason.Conflict, $"Sandbox {id} was resumed, moved or deleted by another node meanwhile (it was paused on node '{row.Node}').");
        }
        try
        {
            ServiceSandbox sandbox = await TryAdoptPausedAsync(row with { Node = _options.Node, SnapshotDirectory = directory }, cancellationToken)
                ?? throw new VesselException(VesselErrorReason.Corrupt, $"Sandbox {id}: the snapshot fetched from the bucket into {directory} names no disk layer.");
            sandbox.RemoteSnapshot = row.RemoteSnapshot;
            await _state.PutSandboxAsync(sandbox.ToRecord(_options.Node), CancellationToken.None);
            _sandboxes[id] = sandbox;
        }
        catch (Exception e) when (e is VesselException or IOException or JsonException)
        {
            // Give it back as it was: paused, its owner the node that paused it, resumable from the bucket.
            await _state.TryMovePausedSandboxAsync(id, _options.Node, row.RemoteSnapshot, row.Node, row.RemoteSnapshot, CancellationToken.None);
            SandboxManager.DeleteDirectory(directory);
            throw;
        }
        Log.TakenOver(_logger, id, row.Node, clock.ElapsedMilliseconds, fetched.FileBytes, fetched.FileSize);
    }

    /// <summary>
    /// Before a resume of a sandbox whose snapshot is in the bucket: clears the row's remote snapshot
    /// if the row is still this node's and unchanged (else another node resumed it: 409, and the
    /// local copy goes). Returns the remote snapshot it cleared (null: none).
    /// </summary>
    private async Task<string?> ClaimRemoteAsync(ServiceSandbox sandbox, CancellationToken cancellationToken)
    {
        if (sandbox.RemoteSnapshot is not { } remote)
        {
            return null;
        }
        if (!await _state.TryMovePausedSandboxAsync(sandbox.Id, _options.Node, remote, _options.Node, null, cancellationToken))
        {
            SandboxRecord? row = await _state.GetSandboxAsync(sandbox.Id, cancellationToken);
            await ReleaseAsync(sandbox, row?.Node ?? "(deleted)");
            throw new VesselException(VesselErrorReason.Conflict,
                $"Sandbox {sandbox.Id} was resumed by node '{row?.Node}' (or deleted) meanwhile; this node's copy of its snapshot was released.");
        }
        sandbox.RemoteSnapshot = null;
        return remote;
    }

    /// <summary>After a resume: the pause's snapshot files in the bucket are no longer needed (its layer stays: the disk reads it).</summary>
    private async Task DeleteRemoteFilesAsync(string id, string? remote)
    {
        if (remote is null || Bucket is not { } bucket)
        {
            return;
        }
        try
        {
            await RemoteSnapshot.Parse(remote, id).DeleteFilesAsync(bucket, CancellationToken.None);
        }
        catch (VesselException e)
        {
            Log.CleanupFailed(_logger, e, id);
        }
    }

    /// <summary>A deleted sandbox's objects in the bucket: its pauses' snapshot files and layers.</summary>
    private async Task DeleteFromBucketAsync(ServiceSandbox sandbox)
    {
        if (Bucket is not { } bucket)
        {
            return;
        }
        try
        {
            await bucket.DeletePrefixAsync(bucket.KeyOf($"sandboxes/{sandbox.Id}/"), CancellationToken.None);
            for (int i = sandbox.Layers.Count - 1; i >= 0; i--)
            {
                if (await bucket.TryReadHeaderAsync(sandbox.Layers[i], CancellationToken.None) is not null)
                {
                    await bucket.DeleteAsync(sandbox.Layers[i], CancellationToken.None);
                }
            }
        }
        catch (VesselException e)
        {
            Log.CleanupFailed(_logger, e, sandbox.Id);
        }
    }

    /// <summary>
    /// Releases the local copies of paused sandboxes another node has taken over (their rows name
    /// it now, or are gone): the snapshot directory and the layers in this home. A cluster node
    /// calls this with each heartbeat.
    /// </summary>
    public async Task ReleaseMovedAsync(CancellationToken cancellationToken)
    {
        foreach (ServiceSandbox sandbox in _sandboxes.Values.Where(s => s.Paused is not null && s.RemoteSnapshot is not null && !s.IsDeleted))
        {
            SandboxRecord? row = await _state.GetSandboxAsync(sandbox.Id, cancellationToken);
            if (row?.Node == _options.Node || !await sandbox.Transition.WaitAsync(0, cancellationToken))
            {
                continue; // still ours, or a transition of its own is running (a resume finds out itself)
            }
            try
            {
                await ReleaseAsync(sandbox, row?.Node ?? "(deleted)");
            }
            finally
            {
                sandbox.Transition.Release();
            }
        }
    }

    /// <summary>Drops this node's copy of a paused sandbox another node owns now (the caller holds its transition).</summary>
    private async Task ReleaseAsync(ServiceSandbox sandbox, string owner)
    {
        if (!sandbox.MarkDeleted())
        {
            return;
        }
        _sandboxes.TryRemove(sandbox.Id, out _);
        if (sandbox.Paused is { } paused)
        {
            SandboxManager.DeleteDirectory(paused.Directory);
        }
        await DeleteLocalCopiesAsync(sandbox.Id, sandbox.Layers); // the bucket's stay for the new owner
        Log.Released(_logger, sandbox.Id, owner);
    }

    /// <summary>
    /// Deletes this home's copies of a sandbox's own layers, newest first, those it lacks skipped
    /// (a node that took the sandbox over reads them from the bucket). Straight from the store:
    /// the reference check of <see cref="LayerStore.DeleteAsync"/> would see the bucket's copies.
    /// </summary>
    private async Task DeleteLocalCopiesAsync(string id, IReadOnlyList<Guid> layers)
    {
        for (int i = layers.Count - 1; i >= 0; i--)
        {
            try
            {
                await _layers.Storage.DeleteAsync(layers[i], CancellationToken.None);
            }
            catch (VesselException e) when (e.Reason == VesselErrorReason.NotFound)
            {
            }
            catch (Exception e) when (e is VesselException or IOException)
            {
                Log.CleanupFailed(_logger, e, id);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(7013, LogLevel.Information, "Sandbox {SandboxId}: pause {Pause} uploaded to the bucket in {Milliseconds} ms ({LayerBytes} layer bytes, {FileBytes} of {FileSize} snapshot file bytes sent)")]
        public static partial void PauseUploaded(ILogger logger, string sandboxId, int pause, long milliseconds, long layerBytes, long fileBytes, long fileSize);

        [LoggerMessage(7014, LogLevel.Error, "Sandbox {SandboxId}: uploading its pause to the bucket failed; it stays paused on this node only")]
        public static partial void PauseUploadFailed(ILogger logger, Exception exception, string sandboxId);

        [LoggerMessage(7015, LogLevel.Information, "Sandbox {SandboxId}: took over from node '{From}', snapshot fetched from the bucket in {Milliseconds} ms ({FileBytes} of {FileSize} bytes)")]
        public static partial void TakenOver(ILogger logger, string sandboxId, string from, long milliseconds, long fileBytes, long fileSize);

        [LoggerMessage(7016, LogLevel.Information, "Sandbox {SandboxId}: now owned by node '{Node}', local copy of its snapshot released")]
        public static partial void Released(ILogger logger, string sandboxId, string node);
    }
}
