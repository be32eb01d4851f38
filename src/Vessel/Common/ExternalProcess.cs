using System.Diagnostics;
using System.Text;

namespace Vessel.Common;

/// <summary>The outcome of a finished external program.</summary>
public sealed record ProcessResult(string FileName, IReadOnlyList<string> Arguments, int ExitCode, string StandardOutput, string StandardError)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>Throws a <see cref="VesselException"/> quoting the program's stderr when it failed.</summary>
    public ProcessResult EnsureSuccess()
    {
        if (ExitCode != 0)
        {
            string tail = Tail(StandardError.Length > 0 ? StandardError : StandardOutput, 2000);
            throw new VesselException(VesselErrorReason.ToolFailed,
                $"{Path.GetFileName(FileName)} {string.Join(' ', Arguments)} exited with {ExitCode}: {tail}");
        }
        return this;
    }

    private static string Tail(string text, int max) => text.Length <= max ? text.Trim() : "..." + text[^max..].Trim();
}

/// <summary>
/// Runs external programs (e2fsprogs, qemu-img, skopeo...) with cancellation: a cancelled or
/// timed-out run kills the whole process tree before the call returns, so nothing outlives it.
/// </summary>
public static class ExternalProcess
{
    public static Task<ProcessResult> RunAsync(
        string fileName,
        IEnumerable<string> arguments,
        CancellationToken cancellationToken,
        string? standardInput = null,
        string? workingDirectory = null,
        TimeSpan? timeout = null,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        Func<StreamWriter, Task>? writeInput = standardInput is null ? null : input => input.WriteAsync(standardInput);
        return RunAsync(fileName, arguments, writeInput, workingDirectory, timeout, environment, cancellationToken);
    }

    /// <summary>Runs a program that reads <paramref name="standardInput"/>, bytes (a protobuf message, say), from its stdin.</summary>
    public static Task<ProcessResult> RunAsync(string fileName, IEnumerable<string> arguments, ReadOnlyMemory<byte> standardInput, TimeSpan timeout, CancellationToken cancellationToken)
        => RunAsync(fileName, arguments, input => input.BaseStream.WriteAsync(standardInput).AsTask(), null, timeout, null, cancellationToken);

    private static async Task<ProcessResult> RunAsync(
        string fileName,
        IEnumerable<string> arguments,
        Func<StreamWriter, Task>? writeInput,
        string? workingDirectory,
        TimeSpan? timeout,
        IReadOnlyDictionary<string, string>? environment,
        CancellationToken cancellationToken)
    {
        var args = arguments.ToList();
        var psi = new ProcessStartInfo(ResolveTool(fileName))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = writeInput is not null,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? string.Empty,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        if (environment is not null)
        {
            foreach (var (k, v) in environment)
            {
                psi.Environment[k] = v;
            }
        }

        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new VesselException(VesselErrorReason.ToolMissing,
                $"Cannot run '{fileName}': {e.Message}. Install it with scripts/setup.sh.", e);
        }

        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        Task outTask = PumpAsync(process.StandardOutput, stdout);
        Task errTask = PumpAsync(process.StandardError, stderr);
        if (writeInput is not null)
        {
            await writeInput(process.StandardInput);
            process.StandardInput.Close();
        }

        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (timeout is { } t)
        {
            timeoutSource.CancelAfter(t);
        }
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token);
        }
        catch (OperationCanceledException)
        {
            KillTree(process);
            await process.WaitForExitAsync(CancellationToken.None);
            if (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"{Path.GetFileName(fileName)} did not finish within {timeout}.");
            }
            throw;
        }
        await Task.WhenAll(outTask, errTask);
        return new ProcessResult(fileName, args, process.ExitCode, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Finds a tool on PATH, also in the sbin directories that root's PATH may lack.</summary>
    public static string ResolveTool(string fileName)
    {
        if (fileName.Contains('/', StringComparison.Ordinal))
        {
            return fileName;
        }
        string path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        foreach (string dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]))
        {
            string candidate = Path.Combine(dir, fileName);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return fileName;
    }

    /// <summary>True when the tool can be found on PATH or in the sbin directories.</summary>
    public static bool IsAvailable(string fileName) => File.Exists(ResolveTool(fileName));

    /// <summary>
    /// Kills <paramref name="process"/> and its children unless it has ended: how every owner of
    /// a helper process (QEMU, virtiofsd, passt, zstd, nbdfuse) stops it. One that exits between
    /// the check and the kill is not an error.
    /// </summary>
    public static void KillTree(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    private static async Task PumpAsync(StreamReader reader, StringBuilder sink)
    {
        char[] buffer = new char[4096];
        int n;
        while ((n = await reader.ReadAsync(buffer)) > 0)
        {
            lock (sink)
            {
                sink.Append(buffer, 0, n);
            }
        }
    }
}
