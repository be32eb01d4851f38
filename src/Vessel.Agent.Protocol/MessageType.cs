namespace Vessel.Agent.Protocol;

/// <summary>Message types of the agent protocol (docs/formats/agent-protocol.md, "Messages").</summary>
public enum MessageType : byte
{
    // Session (stream 0) and generic replies.
    Hello = 1,
    HelloOk = 2,
    Error = 3,
    Ok = 4,
    WindowUpdate = 5,
    Cancel = 6,

    // Requests that open a stream (carry the token).
    Health = 16,
    Shutdown = 17,
    ExecStart = 18,
    ExecAttach = 19,
    FileRead = 20,
    FileWrite = 21,
    Stat = 22,
    List = 23,
    Mkdir = 24,
    Remove = 25,
    Rename = 26,
    SetTime = 27,
    ContainerStart = 28,
    ContainerList = 29,

    /// <summary>Like <see cref="ExecStart"/>, but the process gets a pseudo-terminal as its stdin, stdout and stderr.</summary>
    ExecTerminal = 30,

    // Replies and in-stream messages.
    HealthOk = 32,
    ExecStarted = 33,
    Stdin = 34,
    StdinClose = 35,
    Stdout = 36,
    Stderr = 37,
    Signal = 38,
    Exit = 39,
    FileData = 40,
    FileEnd = 41,
    StatResult = 42,
    ListResult = 43,
    ContainerListResult = 44,

    /// <summary>Host to agent on an exec stream: stop sending this process's output here (before a pause).</summary>
    ExecDetach = 45,

    /// <summary>Agent to host: the last frame of a detached exec stream; output after it waits for the next attach.</summary>
    ExecDetached = 46,

    /// <summary>Host to agent on a terminal exec stream: the terminal's new size (TIOCSWINSZ; the process gets SIGWINCH).</summary>
    Resize = 47,
}

public static class MessageTypes
{
    /// <summary>Requests open a stream; each carries the sandbox token first in its payload.</summary>
    public static bool IsRequest(MessageType type) => type is >= MessageType.Health and <= MessageType.ExecTerminal;

    /// <summary>Data messages count against the receiver's flow-control window.</summary>
    public static bool IsData(MessageType type) => type is MessageType.Stdin or MessageType.Stdout or MessageType.Stderr or MessageType.FileData;
}
