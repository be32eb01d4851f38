using System.ComponentModel;
using System.Diagnostics;

namespace Vessel.Agent;

/// <summary>
/// Starts a process from a thread of its own, so that what <c>prepare</c> changes for that thread
/// only (unshare(2) of its filesystem or namespaces, chroot, raw set*id calls) is what the fork
/// inherits, and the agent's other threads keep their root, namespaces and user. Used for
/// commands (<see cref="AgentProcess"/>) and a pod's container inits (<see cref="Pod"/>).
/// </summary>
internal static class ThreadSpawn
{
    /// <summary>
    /// Runs <paramref name="prepare"/> and then starts <paramref name="psi"/>, both on a new thread
    /// named <paramref name="threadName"/>; a failure of either is rethrown here, an exec failure
    /// as <see cref="AgentErrorException"/> prefixed with <paramref name="what"/>.
    /// </summary>
    public static Process Start(string threadName, string what, ProcessStartInfo psi, Action prepare)
    {
        Process? process = null;
        Exception? failure = null;
        var spawner = new Thread(() =>
        {
            try
            {
                prepare();
                process = Process.Start(psi);
            }
            catch (Win32Exception e)
            {
                failure = new AgentErrorException(e.NativeErrorCode, $"{what}: {e.Message}");
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        {
            IsBackground = true,
            Name = threadName,
        };
        spawner.Start();
        spawner.Join();
        if (failure is not null)
        {
            throw failure;
        }
        return process ?? throw new AgentErrorException(LibC.Einval, $"{what}: the process did not start");
    }
}
