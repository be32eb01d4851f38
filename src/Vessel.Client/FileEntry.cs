namespace Vessel.Client;

/// <summary>A file, directory or link in a sandbox (<see cref="FilesClient.ListAsync"/>, <see cref="FilesClient.StatAsync"/>).</summary>
public sealed record FileEntry
{
    /// <summary>The last component of <see cref="Path"/>.</summary>
    public required string Name { get; init; }

    /// <summary>The absolute path in the guest.</summary>
    public required string Path { get; init; }

    /// <summary>The type as the daemon names it: <c>file</c>, <c>dir</c>, <c>symlink</c> or <c>other</c>.</summary>
    public string Type { get; init; } = "file";

    /// <summary>True for a directory.</summary>
    public bool IsDirectory => Type == "dir";

    /// <summary>Size in bytes.</summary>
    public long Size { get; init; }

    /// <summary>Permission bits (e.g. 0644 = 420).</summary>
    public int Mode { get; init; }

    /// <summary>The owner as <c>uid:gid</c>.</summary>
    public string? Owner { get; init; }

    /// <summary>Last modification time.</summary>
    public DateTimeOffset? ModifiedAt { get; init; }

    /// <summary>A symbolic link's target (null for other types).</summary>
    public string? LinkTarget { get; init; }
}
