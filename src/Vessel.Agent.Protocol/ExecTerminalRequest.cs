namespace Vessel.Agent.Protocol;

/// <summary>
/// Starts a process on a new pseudo-terminal (its stdin, stdout and stderr): the output comes as
/// Stdout, Stdin goes to the terminal, <see cref="MessageType.Resize"/> changes its size. The
/// fields are ExecStart's without the stdin flag (a terminal always has an input side), with the
/// container always present (may be empty) and the initial size last.
/// </summary>
public sealed record ExecTerminalRequest(
    string Token,
    IReadOnlyList<string> Arguments,
    IReadOnlyList<string> Environment,
    string WorkingDirectory,
    string User,
    uint TimeoutMilliseconds,
    string Container,
    TerminalSize Size)
{
    public byte[] Encode()
    {
        var w = new PayloadWriter()
            .String(Token).Strings(Arguments).Strings(Environment).String(WorkingDirectory).String(User).U32(TimeoutMilliseconds).String(Container);
        Size.Write(w);
        return w.ToArray();
    }

    public static ExecTerminalRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new ExecTerminalRequest(r.String(), r.Strings(), r.Strings(), r.String(), r.String(), r.U32(), r.String(), TerminalSize.Read(ref r)));

    /// <summary>The same process as an ExecStart request (with stdin): what the agent runs, less the terminal.</summary>
    public ExecStartRequest ToExecStart() => new(Token, Arguments, Environment, WorkingDirectory, User, true, TimeoutMilliseconds, Container);
}
