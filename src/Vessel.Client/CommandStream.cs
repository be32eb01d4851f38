namespace Vessel.Client;

/// <summary>Which of a command's output streams a <see cref="CommandOutput"/> chunk came from.</summary>
public enum CommandStream
{
    /// <summary>Standard output.</summary>
    Stdout,

    /// <summary>Standard error.</summary>
    Stderr,
}
