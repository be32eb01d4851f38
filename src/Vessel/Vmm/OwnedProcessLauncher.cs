using System.Collections.Concurrent;
using System.Diagnostics;
using Vessel.Common;

namespace Vessel.Vmm;

/// <summary>
/// Starts VMM processes that die with the Vessel process that owns them: each runs under
/// <c>setpriv --pdeathsig SIGKILL</c> (util-linux), which sets PR_SET_PDEATHSIG and execs the
/// VMM, so a <c>kill -9</c> of Vessel takes its VMs with it instead of leaving them for a sweep.
/// The kernel sends the signal when the parent <em>thread</em> ends, not the process, so every
/// start happens on one dedicated thread that lives as long as the process (a thread-pool
/// thread that forked a VMM would retire and kill it).
/// </summary>
internal static class OwnedProcessLauncher
{
    private static readonly BlockingCollection<(ProcessStartInfo Start, TaskCompletionSource<Process> Result)> s_queue = [];
    private static readonly Lazy<Thread> s_thread = new(() =>
    {
        var thread = new Thread(Run) { IsBackground = true, Name = "vessel-vmm-launcher" };
        thread.Start();
        return thread;
    });

    /// <summary>Starts <paramref name="fileName"/> with <paramref name="arguments"/> (and <paramref name="environment"/> added) under the parent-death signal.</summary>
    public static Task<Process> StartAsync(string fileName, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(Setpriv)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in (string[])["--pdeathsig", "SIGKILL", "--", fileName, .. arguments])
        {
            psi.ArgumentList.Add(a);
        }
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[name] = value;
        }
        var result = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = s_thread.Value;
        s_queue.Add((psi, result));
        return result.Task;
    }

    private static string Setpriv
    {
        get
        {
            string path = ExternalProcess.ResolveTool("setpriv");
            if (!File.Exists(path))
            {
                throw new VesselException(VesselErrorReason.ToolMissing, "setpriv (util-linux) is missing: Vessel starts its VMMs through it so they die with Vessel. Install util-linux (scripts/setup.sh).");
            }
            return path;
        }
    }

    private static void Run()
    {
        foreach ((ProcessStartInfo start, TaskCompletionSource<Process> result) in s_queue.GetConsumingEnumerable())
        {
            try
            {
                result.SetResult(Process.Start(start) ?? throw new VesselException(VesselErrorReason.ToolFailed, $"{start.FileName} did not start."));
            }
            catch (Exception e)
            {
                result.SetException(e);
            }
        }
    }
}
