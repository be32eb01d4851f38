namespace Vessel.Client;

/// <summary>How <see cref="CommandsClient.RunAsync"/> and <see cref="CommandsClient.StartAsync"/> run a command.</summary>
public sealed class CommandOptions
{
    /// <summary>Environment variables added to the sandbox's.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }

    /// <summary>The working directory in the guest (default the user's home or /).</summary>
    public string? Cwd { get; init; }

    /// <summary>The user (name or uid[:gid]) in the guest (default root).</summary>
    public string? User { get; init; }

    /// <summary>In a pod, the container to run in (required there; leave it null elsewhere).</summary>
    public string? Container { get; init; }

    /// <summary>Bytes written to the command's stdin before it is closed (foreground commands).</summary>
    public ReadOnlyMemory<byte>? Stdin { get; init; }

    /// <summary>The daemon kills the command after this long.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>
    /// Whether <see cref="CommandResult"/> holds the output (default true). False for output too large
    /// to hold: the result's Stdout and Stderr stay empty and only the callbacks see the chunks.
    /// </summary>
    public bool CollectOutput { get; init; } = true;

    /// <summary>Called with each stdout chunk as it arrives (foreground commands), besides collecting it.</summary>
    public Action<ReadOnlyMemory<byte>>? OnStdout { get; init; }

    /// <summary>Called with each stderr chunk as it arrives (foreground commands), besides collecting it.</summary>
    public Action<ReadOnlyMemory<byte>>? OnStderr { get; init; }
}
