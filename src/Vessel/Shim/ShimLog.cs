using System.Text;
using Microsoft.Extensions.Logging;

namespace Vessel.Shim;

/// <summary>
/// The shim's log: lines on the <c>log</c> FIFO containerd opens in the bundle (it copies them
/// to its own output), else on stderr. Writes that fail (containerd went away) are dropped.
/// </summary>
internal sealed class ShimLog : ILogger, IDisposable
{
    private readonly Stream? _stream;
    private readonly LogLevel _minimum;
    private readonly Lock _gate = new();

    private ShimLog(Stream? stream, LogLevel minimum)
    {
        _stream = stream;
        _minimum = minimum;
    }

    /// <summary>Opens BUNDLE/log when it is there (containerd's FIFO, opened read-write so the open never waits), else logs to stderr.</summary>
    public static ShimLog Open(string bundle, bool debug)
    {
        LogLevel minimum = debug ? LogLevel.Debug : LogLevel.Information;
        string path = Path.Combine(bundle, "log");
        try
        {
            if (File.Exists(path))
            {
                var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
                return new ShimLog(new FileStream(handle, FileAccess.Write, 1), minimum);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return new ShimLog(Console.OpenStandardError(), minimum);
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= _minimum;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel) || _stream is null)
        {
            return;
        }
        string line = $"time=\"{DateTimeOffset.UtcNow:O}\" level={logLevel.ToString().ToLowerInvariant()} msg=\"containerd-shim-vessel-v1: {formatter(state, exception)}{(exception is null ? string.Empty : ": " + exception)}\"\n";
        lock (_gate)
        {
            try
            {
                _stream.Write(Encoding.UTF8.GetBytes(line));
            }
            catch (IOException)
            {
            }
        }
    }

    public void Dispose() => _stream?.Dispose();
}
