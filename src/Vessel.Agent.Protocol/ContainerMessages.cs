namespace Vessel.Agent.Protocol;

/// <summary>
/// Starts one container of a pod: an overlay root (the read-only lower the guest mounted from the
/// disk <paramref name="Lower"/> names, a tmpfs upper capped at <paramref name="UpperMiB"/>) and its
/// process in new mount, PID, UTS and IPC namespaces. Answered with ExecStarted (the pid of the
/// container's first process, as the agent sees it).
/// </summary>
public sealed record ContainerStartRequest(
    string Token,
    string Name,
    string Lower,
    uint UpperMiB,
    IReadOnlyList<string> Arguments,
    IReadOnlyList<string> Environment,
    string WorkingDirectory,
    string User)
{
    public byte[] Encode() => new PayloadWriter()
        .String(Token).String(Name).String(Lower).U32(UpperMiB).Strings(Arguments).Strings(Environment).String(WorkingDirectory).String(User)
        .ToArray();

    public static ContainerStartRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new ContainerStartRequest(r.String(), r.String(), r.String(), r.U32(), r.Strings(), r.Strings(), r.String(), r.String()));
}

/// <summary>One container's state: running, or exited with a code (128+signal when killed).</summary>
public sealed record ContainerStatus(string Name, int Pid, bool Running, int ExitCode, int Signal)
{
    public void Write(PayloadWriter w) => w.String(Name).I32(Pid).Bool(Running).I32(ExitCode).I32(Signal);

    public static ContainerStatus Read(ref PayloadReader r) => new(r.String(), r.I32(), r.Bool(), r.I32(), r.I32());

    public static byte[] EncodeList(IReadOnlyList<ContainerStatus> list) => new PayloadWriter().List(list, static (w, c) => c.Write(w)).ToArray();

    /// <summary>The list <see cref="EncodeList"/> wrote; each status takes at least 17 bytes.</summary>
    public static IReadOnlyList<ContainerStatus> DecodeList(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => r.List(17, "containers", Read));
}
