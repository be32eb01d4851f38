using Microsoft.Extensions.Logging;

namespace Vessel.Service;

/// <summary>Port forwards of the sandbox daemon (event ids 7050-7059 of the daemon's 7000-7099).</summary>
internal static partial class ServiceLog
{
    [LoggerMessage(7050, LogLevel.Information, "Sandbox {SandboxId}: guest port {GuestPort} is reachable at 127.0.0.1:{HostPort}")]
    public static partial void PortForwarded(ILogger logger, string sandboxId, int guestPort, int hostPort);

    [LoggerMessage(7051, LogLevel.Warning, "Sandbox {SandboxId}: host port {OldPort} of guest port {GuestPort} was taken while paused; it moved to {HostPort}")]
    public static partial void PortMoved(ILogger logger, string sandboxId, int guestPort, int oldPort, int hostPort);
}
