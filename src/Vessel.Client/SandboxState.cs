namespace Vessel.Client;

/// <summary>The lifecycle state of a sandbox.</summary>
public enum SandboxState
{
    /// <summary>A state this version of the client does not know.</summary>
    Unknown,

    /// <summary>The VM runs; commands and files work.</summary>
    Running,

    /// <summary>Snapshotted to disk; its VM process is gone. Resume it (or connect) to use it.</summary>
    Paused,
}
