using System.Diagnostics;
using System.Text;

namespace Vessel.Common;

/// <summary>
/// A long-lived helper process that Vessel started and owns (QEMU, virtiofsd, passt): its exit
/// as a task, the start of what it writes kept for error messages (bounded; both pipes are read
/// to their end so the helper never blocks on a full pipe), and disposal that kills its tree and
/// waits for it. Its stdin is closed: no helper reads it. One owner type, so every helper is
/// released, and explains its failure, the same way.
/// </summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    /// <summary>Enough of a helper's stderr for its error messages.</summary>
    public const int DefaultMaxOutputChars = 16 << 10;

    private static readonly TimeSpan s_killWait = TimeSpan.FromSeconds(10);

    private readonly StringBuilder _output = new();
    private readonly int _maxOutputChars;
    private readonly Task _pipes;
    private int _disposed;

    /// <param name="process">A started process with redirected stdin, stdout and stderr; this object owns it from now on.</param>
    /// <param name="maxOutputChars">How much of its output to keep; the rest is read and dropped.</param>
    /// <param name="keepStdout">Whether stdout joins stderr in <see cref="Output"/> (else it is read and dropped).</param>
    public ChildProcess(Process process, int maxOutputChars = DefaultMaxOutputChars, bool keepStdout = false)
    {
        Process = process;
        Pid = process.Id;
        _maxOutputChars = maxOutputChars;
        process.StandardInput.Close();
        _pipes = Task.WhenAll(PumpAsync(process.StandardError, keep: true), PumpAsync(process.StandardOutput, keepStdout));
        Exited = process.WaitForExitAsync();
    }

    /// <summary>The process (for its exit code, or a signal); disposal disposes it.</summary>
    public Process Process { get; }

    public int Pid { get; }

    /// <summary>Completes when the process has exited.</summary>
    public Task Exited { get; }

    /// <summary>What the process wrote to stderr so far (and stdout where kept), up to the bound.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// <see cref="Output"/>, trimmed, once the pipes have ended or <paramref name="wait"/> has passed:
    /// after an exit the pumps may still be reading the helper's last words.
    /// </summary>
    public async Task<string> FinalOutputAsync(TimeSpan wait)
    {
        await _pipes.WaitAsync(wait, CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        return Output.Trim();
    }

    /// <summary>Kills the process tree (unless it has exited), waits for the exit and disposes the process.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        try
        {
            ExternalProcess.KillTree(Process);
            await Exited.WaitAsync(s_killWait, CancellationToken.None);
        }
        finally
        {
            Process.Dispose();
        }
    }

    private async Task PumpAsync(StreamReader reader, bool keep)
    {
        char[] buffer = new char[4096];
        int n;
        try
        {
            while ((n = await reader.ReadAsync(buffer)) > 0)
            {
                if (!keep)
                {
                    continue;
                }
                lock (_output)
                {
                    _output.Append(buffer, 0, Math.Min(n, Math.Max(0, _maxOutputChars - _output.Length)));
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The pipe went with the process.
        }
    }
}
