using Microsoft.Extensions.Logging;

namespace Vessel.Service;

/// <summary>Log messages of the sandbox daemon (event ids 7000-7099).</summary>
internal static partial class ServiceLog
{
    [LoggerMessage(7000, LogLevel.Information, "Sandbox {SandboxId} created from template '{Template}' in {Milliseconds} ms, agent ready {AgentReady} ms (restored: {Restored})")]
    public static partial void Created(ILogger logger, string sandboxId, string template, long milliseconds, long agentReady, bool restored);

    [LoggerMessage(7001, LogLevel.Information, "Sandbox {SandboxId} deleted ({Why})")]
    public static partial void Deleted(ILogger logger, string sandboxId, string why);

    [LoggerMessage(7002, LogLevel.Information, "Sandbox {SandboxId} paused in {Milliseconds} ms")]
    public static partial void Paused(ILogger logger, string sandboxId, long milliseconds);

    [LoggerMessage(7003, LogLevel.Information, "Sandbox {SandboxId} resumed in {Milliseconds} ms")]
    public static partial void Resumed(ILogger logger, string sandboxId, long milliseconds);

    [LoggerMessage(7004, LogLevel.Warning, "Sandbox {SandboxId} was running when the previous daemon stopped: its VM could not outlive the daemon's disk server, so it was stopped and removed")]
    public static partial void RunningDropped(ILogger logger, string sandboxId);

    [LoggerMessage(7005, LogLevel.Information, "Sandbox {SandboxId} is paused and was kept across the daemon restart")]
    public static partial void PausedAdopted(ILogger logger, string sandboxId);

    [LoggerMessage(7006, LogLevel.Error, "Sandbox {SandboxId}: cleanup failed")]
    public static partial void CleanupFailed(ILogger logger, Exception exception, string sandboxId);

    [LoggerMessage(7007, LogLevel.Warning, "Sandbox {SandboxId} reached its timeout and could not be paused: retrying")]
    public static partial void AutoPauseRetry(ILogger logger, Exception exception, string sandboxId);

    [LoggerMessage(7008, LogLevel.Warning, "Removed leftovers of crashed runs: {Leftovers}")]
    public static partial void Swept(ILogger logger, string leftovers);

    [LoggerMessage(7009, LogLevel.Error, "Sandbox {SandboxId}: pause failed, the sandbox is lost")]
    public static partial void PauseFailed(ILogger logger, Exception exception, string sandboxId);

    [LoggerMessage(7010, LogLevel.Information, "Template build {BuildId} of '{Template}' ended: {Status}")]
    public static partial void BuildEnded(ILogger logger, string buildId, string template, string status);

    [LoggerMessage(7011, LogLevel.Warning, "Reclaimed layer {Layer} of a pause a crash interrupted ({Intent})")]
    public static partial void OrphanLayerReclaimed(ILogger logger, Guid layer, string intent);

    [LoggerMessage(7013, LogLevel.Information, "Sandbox {SandboxId}: pause {Pause} uploaded to the bucket in {Milliseconds} ms ({LayerBytes} layer bytes, {FileBytes} of {FileSize} snapshot file bytes sent)")]
    public static partial void PauseUploaded(ILogger logger, string sandboxId, int pause, long milliseconds, long layerBytes, long fileBytes, long fileSize);

    [LoggerMessage(7014, LogLevel.Error, "Sandbox {SandboxId}: uploading its pause to the bucket failed; it stays paused on this node only")]
    public static partial void PauseUploadFailed(ILogger logger, Exception exception, string sandboxId);

    [LoggerMessage(7015, LogLevel.Information, "Sandbox {SandboxId}: took over from node '{From}', snapshot fetched from the bucket in {Milliseconds} ms ({FileBytes} of {FileSize} bytes)")]
    public static partial void TakenOver(ILogger logger, string sandboxId, string from, long milliseconds, long fileBytes, long fileSize);

    [LoggerMessage(7016, LogLevel.Information, "Sandbox {SandboxId}: now owned by node '{Node}', local copy of its snapshot released")]
    public static partial void Released(ILogger logger, string sandboxId, string node);

    [LoggerMessage(7012, LogLevel.Critical, "Test crash point '{Point}' reached: the daemon kills itself")]
    public static partial void TestCrash(ILogger logger, string point);
}
