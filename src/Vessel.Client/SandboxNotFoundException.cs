using System.Net;

namespace Vessel.Client;

/// <summary>The daemon knows no sandbox with this id (it was killed, timed out, or never existed).</summary>
public sealed class SandboxNotFoundException : VesselApiException
{
    /// <summary>Creates the exception for <paramref name="sandboxId"/>.</summary>
    /// <param name="sandboxId">The id that was not found.</param>
    /// <param name="problem">The problem details the daemon sent.</param>
    /// <param name="message">The message.</param>
    public SandboxNotFoundException(string sandboxId, ApiProblem problem, string message)
        : base(HttpStatusCode.NotFound, problem, message)
    {
        SandboxId = sandboxId;
    }

    /// <summary>The id that was not found.</summary>
    public string SandboxId { get; }
}
