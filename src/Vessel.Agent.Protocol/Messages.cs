namespace Vessel.Agent.Protocol;

// Message bodies (docs/formats/agent-protocol.md, "Messages"). Requests carry the sandbox
// token as their first field; replies do not.

/// <summary>Host to agent on stream 0: opens (or re-opens) a session.</summary>
public sealed record HelloMessage(ushort Version, string Token, ulong Nonce)
{
    public byte[] Encode() => new PayloadWriter().U32(Version).String(Token).U64(Nonce).ToArray();

    public static HelloMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new HelloMessage(checked((ushort)r.U32()), r.String(), r.U64()));
}

/// <summary>Agent to host on stream 0: the session is open. Echoes the hello's nonce.</summary>
public sealed record HelloOkMessage(ushort Version, ulong Nonce, string AgentVersion, ulong UptimeMilliseconds, ulong AgentStartMilliseconds)
{
    public byte[] Encode() => new PayloadWriter().U32(Version).U64(Nonce).String(AgentVersion).U64(UptimeMilliseconds).U64(AgentStartMilliseconds).ToArray();

    public static HelloOkMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new HelloOkMessage(checked((ushort)r.U32()), r.U64(), r.String(), r.U64(), r.U64()));
}

/// <summary>Ends a stream with a failure. <see cref="Code"/> is a Linux errno where one applies.</summary>
public sealed record ErrorMessage(int Code, string Message)
{
    public byte[] Encode() => new PayloadWriter().I32(Code).String(Message).ToArray();

    public static ErrorMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new ErrorMessage(r.I32(), r.String()));
}

/// <summary>Grants the peer more bytes of data messages on this stream.</summary>
public sealed record WindowUpdateMessage(uint Bytes)
{
    public byte[] Encode() => new PayloadWriter().U32(Bytes).ToArray();

    public static WindowUpdateMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new WindowUpdateMessage(r.U32()));
}

/// <summary>A request with only the token: health, shutdown.</summary>
public sealed record TokenOnlyRequest(string Token)
{
    public byte[] Encode() => new PayloadWriter().String(Token).ToArray();

    public static TokenOnlyRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new TokenOnlyRequest(r.String()));
}

/// <summary>Sets the guest's wall clock (CLOCK_REALTIME) to the host's, in nanoseconds since the Unix epoch.</summary>
public sealed record SetTimeRequest(string Token, long UnixNanoseconds)
{
    public byte[] Encode() => new PayloadWriter().String(Token).I64(UnixNanoseconds).ToArray();

    public static SetTimeRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new SetTimeRequest(r.String(), r.I64()));
}

public sealed record HealthOkMessage(ulong UptimeMilliseconds, bool RootMounted, uint RunningProcesses)
{
    public byte[] Encode() => new PayloadWriter().U64(UptimeMilliseconds).Bool(RootMounted).U32(RunningProcesses).ToArray();

    public static HealthOkMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new HealthOkMessage(r.U64(), r.Bool(), r.U32()));
}

/// <summary>Starts a process chrooted in the sandbox rootfs.</summary>
/// <param name="Environment">KEY=VALUE entries; empty means a default PATH/HOME.</param>
/// <param name="User">A name or uid, optionally ":group" or ":gid"; empty means root.</param>
/// <param name="TimeoutMilliseconds">0 means none; when it fires the process tree is killed.</param>
public sealed record ExecStartRequest(
    string Token,
    IReadOnlyList<string> Arguments,
    IReadOnlyList<string> Environment,
    string WorkingDirectory,
    string User,
    bool Stdin,
    uint TimeoutMilliseconds,
    string Container = "")
{
    public byte[] Encode() => new PayloadWriter()
        .String(Token).Strings(Arguments).Strings(Environment).String(WorkingDirectory).String(User).Bool(Stdin).U32(TimeoutMilliseconds)
        .OptionalContainer(Container)
        .ToArray();

    public static ExecStartRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new ExecStartRequest(r.String(), r.Strings(), r.Strings(), r.String(), r.String(), r.Bool(), r.U32(), r.OptionalContainer()));
}

/// <summary>Re-attaches a new session to a process started earlier (after a reconnect).</summary>
public sealed record ExecAttachRequest(string Token, int Pid)
{
    public byte[] Encode() => new PayloadWriter().String(Token).I32(Pid).ToArray();

    public static ExecAttachRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new ExecAttachRequest(r.String(), r.I32()));
}

public sealed record ExecStartedMessage(int Pid)
{
    public byte[] Encode() => new PayloadWriter().I32(Pid).ToArray();

    public static ExecStartedMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new ExecStartedMessage(r.I32()));
}

/// <summary>Sends a signal (Linux number) to the process's whole tree.</summary>
public sealed record SignalMessage(int Signal)
{
    public byte[] Encode() => new PayloadWriter().I32(Signal).ToArray();

    public static SignalMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new SignalMessage(r.I32()));
}

/// <summary>The process ended: its exit code, or the signal that killed it (then ExitCode is 128+signal).</summary>
public sealed record ExitMessage(int ExitCode, int Signal, bool TimedOut)
{
    public byte[] Encode() => new PayloadWriter().I32(ExitCode).I32(Signal).Bool(TimedOut).ToArray();

    public static ExitMessage Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new ExitMessage(r.I32(), r.I32(), r.Bool()));
}

/// <summary>A request naming one path in the rootfs: read, stat, list.</summary>
public sealed record PathRequest(string Token, string Path, string Container = "")
{
    public byte[] Encode() => new PayloadWriter().String(Token).String(Path).OptionalContainer(Container).ToArray();

    public static PathRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new PathRequest(r.String(), r.String(), r.OptionalContainer()));
}

/// <summary>Write a file (data follows as FileData frames, then FileEnd), or make a directory.</summary>
public sealed record PathModeRequest(string Token, string Path, uint Mode, bool Flag, string Container = "")
{
    public byte[] Encode() => new PayloadWriter().String(Token).String(Path).U32(Mode).Bool(Flag).OptionalContainer(Container).ToArray();

    public static PathModeRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new PathModeRequest(r.String(), r.String(), r.U32(), r.Bool(), r.OptionalContainer()));
}

public sealed record RenameRequest(string Token, string From, string To, string Container = "")
{
    public byte[] Encode() => new PayloadWriter().String(Token).String(From).String(To).OptionalContainer(Container).ToArray();

    public static RenameRequest Decode(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => new RenameRequest(r.String(), r.String(), r.String(), r.OptionalContainer()));
}

public enum FileKind : byte
{
    Other = 0,
    File = 1,
    Directory = 2,
    Symlink = 3,
}

/// <summary>One file's metadata (lstat: a symlink is reported as itself).</summary>
public sealed record FileEntry(string Name, FileKind Kind, uint Mode, ulong Size, long ModifiedUnixMilliseconds, uint Uid, uint Gid, string LinkTarget)
{
    public void Write(PayloadWriter w) => w.String(Name).U8((byte)Kind).U32(Mode).U64(Size).I64(ModifiedUnixMilliseconds).U32(Uid).U32(Gid).String(LinkTarget);

    public static FileEntry Read(ref PayloadReader r) => new(r.String(), (FileKind)r.U8(), r.U32(), r.U64(), r.I64(), r.U32(), r.U32(), r.String());

    public byte[] Encode() => PayloadWriter.Build(Write);

    public static FileEntry Decode(ReadOnlySpan<byte> payload) => PayloadReader.ReadWhole(payload, Read);

    public static byte[] EncodeList(IReadOnlyList<FileEntry> entries) => new PayloadWriter().List(entries, static (w, e) => e.Write(w)).ToArray();

    /// <summary>The list <see cref="EncodeList"/> wrote; each entry takes at least 16 bytes.</summary>
    public static IReadOnlyList<FileEntry> DecodeList(ReadOnlySpan<byte> payload)
        => PayloadReader.ReadWhole(payload, static (ref PayloadReader r) => r.List(16, "entries", Read));
}

public static class AgentProtocol
{
    public const ushort Version = 1;

    /// <summary>
    /// The agent version string of an agent that answers <see cref="MessageType.ExecDetach"/>.
    /// Older agents (still running in snapshots taken before it) say "vessel-agent/1": the host
    /// then detaches the old way, by dropping the stream.
    /// </summary>
    public const string AgentVersion = "vessel-agent/2";

    /// <summary>
    /// Eight bytes the agent writes before its HelloOk. After a reconnect the channel may still
    /// carry bytes of the old session; the host skips everything up to this marker followed by
    /// a HelloOk that echoes its own nonce.
    /// </summary>
    public static ReadOnlySpan<byte> SyncMarker => "VESSEL\u0001\n"u8;

    /// <summary>Name of the virtio-serial port (sysfs <c>/sys/class/virtio-ports/*/name</c>).</summary>
    public const string PortName = "vessel.ctl";

    /// <summary>Kernel command-line parameter carrying the sandbox token.</summary>
    public const string TokenParameter = "vessel.token";
}
