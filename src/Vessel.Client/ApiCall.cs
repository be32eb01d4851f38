namespace Vessel.Client;

/// <summary>
/// What a request does, for messages ("create a sandbox from template 'web'"), and which sandbox
/// it concerns, so that a 404 becomes <see cref="SandboxNotFoundException"/>.
/// </summary>
/// <param name="What">The action, after "could not" (lower case, no final period).</param>
/// <param name="SandboxId">The sandbox the route names, if any.</param>
/// <param name="NotFoundIsSandbox">
/// A 404 means the sandbox is unknown. False on routes where a 404 may mean something inside it
/// (a file, a pid); then only a problem that names the sandbox counts.
/// </param>
internal readonly record struct ApiCall(string What, string? SandboxId = null, bool NotFoundIsSandbox = true);
