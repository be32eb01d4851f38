using System.CommandLine;

namespace Vessel.Cli;

/// <summary>The CLI boundary: maps exceptions to messages on stderr and exit codes.</summary>
internal static class CliRunner
{
    public static async Task<int> InvokeAsync(RootCommand root, string[] args)
    {
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cts.Cancel();
        };
        try
        {
            ParseResult parse = root.Parse(args);
            return await parse.InvokeAsync(cancellationToken: cts.Token);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("vessel: cancelled");
            return 130;
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
            await Console.Error.WriteLineAsync("vessel: cancelled");
            return 130;
        }
        catch (VesselException e)
        {
            await Console.Error.WriteLineAsync($"vessel: error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException or TimeoutException)
        {
            await Console.Error.WriteLineAsync($"vessel: error: {e.Message}");
            return 1;
        }
    }
}
