using System.CommandLine;

namespace Vessel.Cli.Commands;

/// <summary>How every command is put together: its subcommands, and a body run through <see cref="CliRunner.RunAsync"/>.</summary>
internal static class CommandActions
{
    /// <summary>Adds <paramref name="subcommands"/> to <paramref name="command"/>, in order, and returns it.</summary>
    public static Command WithSubcommands(this Command command, params IEnumerable<Command> subcommands)
    {
        foreach (Command subcommand in subcommands)
        {
            command.Subcommands.Add(subcommand);
        }
        return command;
    }

    /// <summary>Adds <paramref name="options"/> to <paramref name="command"/>, in order, and returns it.</summary>
    public static Command WithOptions(this Command command, params IEnumerable<Option> options)
    {
        foreach (Option option in options)
        {
            command.Options.Add(option);
        }
        return command;
    }

    /// <summary>
    /// Makes <paramref name="body"/> the command's action, run through <see cref="CliRunner.RunAsync"/>
    /// (a failure becomes one line on stderr and exit code 1), and returns the command.
    /// </summary>
    public static Command WithAction(this Command command, Func<ParseResult, CancellationToken, Task<int>> body)
    {
        command.SetAction((parse, ct) => CliRunner.RunAsync(token => body(parse, token), ct));
        return command;
    }
}
