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
    {
        var r = new PayloadReader(payload);
        var m = new ContainerStartRequest(r.String(), r.String(), r.String(), r.U32(), r.Strings(), r.Strings(), r.String(), r.String());
        r.ExpectEnd();
        return m;
    }
}

/// <summary>One container's state: running, or exited with a code (128+signal when killed).</summary>
public sealed record ContainerStatus(string Name, int Pid, bool Running, int ExitCode, int Signal)
{
    public static byte[] EncodeList(IReadOnlyList<ContainerStatus> list)
    {
        var w = new PayloadWriter().U32((uint)list.Count);
        foreach (ContainerStatus c in list)
        {
            w.String(c.Name).I32(c.Pid).Bool(c.Running).I32(c.ExitCode).I32(c.Signal);
        }
        return w.ToArray();
    }

    public static IReadOnlyList<ContainerStatus> DecodeList(ReadOnlySpan<byte> payload)
    {
        var r = new PayloadReader(payload);
        uint count = r.U32();
        if (count > payload.Length / 17)
        {
            throw new AgentProtocolException($"List of {count} containers runs past the end of the payload.");
        }
        var list = new List<ContainerStatus>((int)count);
        for (uint i = 0; i < count; i++)
        {
            list.Add(new ContainerStatus(r.String(), r.I32(), r.Bool(), r.I32(), r.I32()));
        }
        r.ExpectEnd();
        return list;
    }
}
