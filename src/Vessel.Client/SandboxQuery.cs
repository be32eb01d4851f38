namespace Vessel.Client;

/// <summary>A filter for <see cref="SandboxesClient.ListAsync"/>; unset members match everything.</summary>
public sealed class SandboxQuery
{
    /// <summary>Only sandboxes in this state.</summary>
    public SandboxState? State { get; init; }

    /// <summary>Only sandboxes whose metadata has all of these keys with these values.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}
