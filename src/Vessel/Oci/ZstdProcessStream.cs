using System.Diagnostics;
using Vessel.Common;

namespace Vessel.Oci;

/// <summary>
/// Decodes a zstd layer through the <c>zstd</c> tool (package zstd): .NET 10 has no zstd
/// decoder and Vessel takes no native dependency for it. A pump task feeds the compressed
/// stream to the tool's stdin; reads come from its stdout. The stream owns the process:
/// disposal kills it (with its tree) and waits for it, so nothing outlives the layer.
/// </summary>
internal sealed class ZstdProcessStream : ReadOnlyStream
{
    private const int MaxStderr = 4096; // enough for zstd's one-line errors
    private const string ToolErrorKey = "Vessel.Oci.ZstdToolError";

    private readonly Process _process;
    private readonly Stream _stdout;
    private readonly Task _pump;
    private readonly Task<string> _stderr;
    private readonly CancellationTokenSource _stop = new();
    private readonly string _what;
    private bool _finished;

    private ZstdProcessStream(Process process, Stream input, string what)
    {
        _process = process;
        _what = what;
        _stdout = process.StandardOutput.BaseStream;
        _pump = PumpAsync(input, process.StandardInput.BaseStream, _stop.Token);
        _stderr = ReadStderrAsync(process.StandardError);
    }

    public static bool IsToolError(Exception e) => e.Data.Contains(ToolErrorKey);

    public static ZstdProcessStream Start(Stream input, string what)
    {
        string tool = ExternalProcess.ResolveTool("zstd");
        if (!File.Exists(tool))
        {
            throw new VesselException(VesselErrorReason.ToolMissing,
                $"{what} is compressed with zstd, which Vessel decodes with the 'zstd' tool; install it (apt-get install zstd, or scripts/setup.sh).");
        }
        var psi = new ProcessStartInfo(tool)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "-d", "-c", "-q", "--no-progress" })
        {
            psi.ArgumentList.Add(a);
        }
        var process = new Process { StartInfo = psi };
        process.Start();
        return new ZstdProcessStream(process, input, what);
    }

    protected override async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (_finished)
        {
            return 0;
        }
        int n = await _stdout.ReadAsync(buffer, cancellationToken);
        if (n == 0)
        {
            await FinishAsync(cancellationToken);
        }
        return n;
    }

    protected override async ValueTask ReleaseAsync() => await StopAsync();

    private async Task StopAsync()
    {
        _stop.Cancel();
        ExternalProcess.KillTree(_process);
        await _process.WaitForExitAsync(CancellationToken.None);
        try
        {
            await _pump;
        }
        catch (Exception)
        {
            // The pump's failure was reported by a read, or nobody reads any more.
        }
        _process.Dispose();
        _stop.Dispose();
    }

    private async Task FinishAsync(CancellationToken cancellationToken)
    {
        await _process.WaitForExitAsync(cancellationToken);
        Exception? pumpError = null;
        try
        {
            await _pump.WaitAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            pumpError = e;
        }
        // A digest failure of the compressed blob explains the tool's complaint about truncated input: report it first.
        if ((pumpError is not null && BlobErrors.IsMismatch(pumpError)) || (pumpError is not null && _process.ExitCode == 0))
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(pumpError);
        }
        if (_process.ExitCode != 0)
        {
            string stderr = (await _stderr).Trim();
            var e = new InvalidDataException($"the zstd data is corrupt (zstd exited with {_process.ExitCode}: {stderr})");
            e.Data[ToolErrorKey] = true;
            throw e;
        }
        _finished = true;
    }

    private static async Task PumpAsync(Stream input, Stream stdin, CancellationToken cancellationToken)
    {
        await Task.Yield();
        try
        {
            await input.CopyToAsync(stdin, 81920, cancellationToken);
        }
        finally
        {
            try
            {
                await stdin.DisposeAsync();
            }
            catch (IOException)
            {
                // The tool exited early (corrupt input); its exit code tells the story.
            }
        }
    }

    private static async Task<string> ReadStderrAsync(StreamReader reader)
    {
        char[] buffer = new char[MaxStderr];
        int have = 0;
        int n;
        while ((n = await reader.ReadAsync(buffer.AsMemory(have))) > 0)
        {
            have += n;
            if (have == buffer.Length)
            {
                // Keep reading to drain the pipe but keep only the start.
                char[] scratch = new char[4096];
                while (await reader.ReadAsync(scratch) > 0)
                {
                }
                break;
            }
        }
        return new string(buffer, 0, have);
    }
}
