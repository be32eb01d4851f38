using System.CommandLine;
using System.CommandLine.Parsing;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Vessel.Cli;

/// <summary>
/// The CLI boundary: parse errors, failures and signals become one line on stderr and an exit
/// code; no stack trace ever reaches the user. Exit codes: 0 success, 1 failure (a usage error
/// included), 130 after SIGINT (Ctrl+C), 143 after SIGTERM (128 + the signal, as shells report it).
/// A command's own code passes through (a sandbox's command exit code, 124 on its timeout).
/// </summary>
internal static partial class CliRunner
{
    private const int Failure = 1;
    private const int Interrupted = 130;
    private const int Terminated = 143;

    private static int s_signalExitCode;

    public static async Task<int> InvokeAsync(RootCommand root, string[] args)
    {
        using var cts = new CancellationTokenSource();
        // Vessel handles the signals itself (not System.CommandLine) so that it knows which one came.
        using PosixSignalRegistration interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => Stop(c, Interrupted, cts));
        using PosixSignalRegistration terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Stop(c, Terminated, cts));
        try
        {
            ParseResult parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                foreach (ParseError error in parse.Errors)
                {
                    await Console.Error.WriteLineAsync($"vessel: {Explain(error)}");
                }
                await Console.Error.WriteLineAsync($"vessel: see 'vessel {string.Join(' ', CommandPath(parse.CommandResult))} --help'");
                return Failure;
            }
            var configuration = new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
            int code = await parse.InvokeAsync(configuration, cts.Token);
            return code;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return await CancelledAsync();
        }
        catch (Exception e)
        {
            return await FailedAsync(e);
        }
    }

    /// <summary>Runs a command body and turns its failures into one line on stderr and exit code 1.</summary>
    public static async Task<int> RunAsync(Func<CancellationToken, Task<int>> body, CancellationToken cancellationToken)
    {
        try
        {
            return await body(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return await CancelledAsync();
        }
        catch (Exception e)
        {
            return await FailedAsync(e);
        }
    }

    private static void Stop(PosixSignalContext context, int exitCode, CancellationTokenSource cts)
    {
        context.Cancel = true; // exit through the cleanup paths, not at once
        Interlocked.CompareExchange(ref s_signalExitCode, exitCode, 0);
        cts.Cancel();
    }

    private static async Task<int> CancelledAsync()
    {
        int code = Volatile.Read(ref s_signalExitCode);
        await Console.Error.WriteLineAsync(code == Terminated ? "vessel: terminated (SIGTERM)" : "vessel: cancelled");
        return code == 0 ? Interrupted : code;
    }

    private static async Task<int> FailedAsync(Exception e)
    {
        string message = e switch
        {
            VesselException or InvalidDataException or IOException or UnauthorizedAccessException or TimeoutException => $"error: {e.Message}",
            System.Net.Sockets.SocketException s => $"error: {s.Message} ({s.SocketErrorCode})",
            _ => $"internal error ({e.GetType().Name}): {e.Message}",
        };
        await Console.Error.WriteLineAsync($"vessel: {OneLine(message)}");
        return Failure;
    }

    /// <summary>Messages stay on one line and within reason (a 4000-byte name is not printed whole).</summary>
    internal static string OneLine(string message)
    {
        const int MaxLength = 1000;
        string flat = message.ReplaceLineEndings(" ");
        return flat.Length <= MaxLength ? flat : string.Concat(flat.AsSpan(0, MaxLength), $"... ({flat.Length - MaxLength} more characters)");
    }

    /// <summary>A parse error in words: the option and the form it expects, never a .NET type name.</summary>
    internal static string Explain(ParseError error)
    {
        Match m = TypeError().Match(error.Message);
        if (m.Success)
        {
            return $"{m.Groups["symbol"].Value}: '{m.Groups["value"].Value}' is not {Expected(m.Groups["type"].Value)}";
        }
        return error.Message;
    }

    private static string Expected(string type) => type switch
    {
        _ when type.Contains("System.Double", StringComparison.Ordinal) => "a number (e.g. 30 or 2.5)",
        _ when type.Contains("System.Int32", StringComparison.Ordinal) || type.Contains("System.Int64", StringComparison.Ordinal) => "a whole number (e.g. 4096)",
        _ when type.Contains("System.Boolean", StringComparison.Ordinal) => "true or false",
        _ => "of the expected form (see --help)",
    };

    private static IEnumerable<string> CommandPath(CommandResult? result)
    {
        var names = new Stack<string>();
        for (SymbolResult? r = result; r is CommandResult c && c.Parent is not null; r = r.Parent)
        {
            names.Push(c.Command.Name);
        }
        return names;
    }

    [GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for (?:option|command|argument) '(?<symbol>[^']*)' as expected type '(?<type>[^']*)'", RegexOptions.Singleline)]
    private static partial Regex TypeError();
}
