using System.CommandLine;
using Vessel.Agent;

namespace Vessel.Cli.Commands;

/// <summary>
/// COMMAND (after <c>--</c>), <c>--env</c>, <c>--cwd</c>, <c>--user</c> and <c>--timeout</c>: what to
/// run in a sandbox, the same for <c>sandbox run</c>, <c>template run</c> and <c>sandbox exec</c>;
/// only the defaults each names in its help differ.
/// </summary>
internal sealed class ExecOptions
{
    public ExecOptions(string envDescription, string cwdDefault, string userDescription)
    {
        Env = new Option<string[]>("--env", "-e") { Description = envDescription };
        Cwd = new Option<string?>("--cwd", "-w") { Description = $"Working directory ({cwdDefault})." };
        User = new Option<string?>("--user", "-u") { Description = userDescription };
    }

    public Argument<string[]> CommandLine { get; } = new("command") { Description = "The command and its arguments, after --.", Arity = ArgumentArity.OneOrMore };

    public Option<string[]> Env { get; }

    public Option<string?> Cwd { get; }

    public Option<string?> User { get; }

    public Option<double?> Timeout { get; } = CliOptions.Seconds("--timeout", "Kill the command after this many seconds (exit 124 then).");

    /// <summary>Adds COMMAND after the arguments the command already has, and the options.</summary>
    public void AddTo(Command command)
    {
        command.Arguments.Add(CommandLine);
        command.WithOptions(Env, Cwd, User, Timeout);
    }

    public TimeSpan? GetTimeout(ParseResult parse) => parse.GetValue(Timeout) is double s ? TimeSpan.FromSeconds(s) : null;

    /// <summary>
    /// The request for the agent: <paramref name="environment"/> first (a template's ENV) and the
    /// <c>--env</c> pairs after it; <c>--cwd</c> and <c>--user</c> over the given defaults.
    /// </summary>
    public ExecRequest ToRequest(ParseResult parse, IReadOnlyList<string>? environment = null, string? workingDirectory = null, string? user = null) =>
        new(parse.GetValue(CommandLine)!)
        {
            Environment = [.. environment ?? [], .. parse.GetValue(Env) ?? []],
            WorkingDirectory = parse.GetValue(Cwd) ?? workingDirectory,
            User = parse.GetValue(User) ?? user,
            Timeout = GetTimeout(parse),
        };
}
