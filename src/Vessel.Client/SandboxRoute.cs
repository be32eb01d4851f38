namespace Vessel.Client;

/// <summary>
/// Where the requests about one sandbox go: the transport, the sandbox's id (for messages and for
/// <see cref="SandboxNotFoundException"/>) and the route of the resource they act on
/// (<c>sandboxes/ID</c>, <c>sandboxes/ID/files</c>, <c>sandboxes/ID/commands/PID</c>).
/// <see cref="Sandbox"/>, its <see cref="CommandsClient"/> and <see cref="FilesClient"/> and each
/// <see cref="CommandHandle"/> hold one.
/// </summary>
internal readonly record struct SandboxRoute(ApiTransport Transport, string SandboxId, string Path)
{
    /// <summary>The route of the sandbox itself.</summary>
    public static SandboxRoute Of(ApiTransport transport, string sandboxId) => new(transport, sandboxId, "sandboxes/" + Uri.EscapeDataString(sandboxId));

    /// <summary>The route of a resource below this one.</summary>
    public SandboxRoute Below(string segment) => this with { Path = $"{Path}/{segment}" };

    /// <summary>A call that acts in this sandbox: "<paramref name="what"/> in sandbox ID" in messages.</summary>
    /// <param name="what">What is being done, e.g. "read /etc/hosts".</param>
    /// <param name="notFoundIsSandbox">False where a 404 means the file or process, not the sandbox.</param>
    public ApiCall Call(string what, bool notFoundIsSandbox) => new($"{what} in sandbox {SandboxId}", SandboxId, notFoundIsSandbox);
}
