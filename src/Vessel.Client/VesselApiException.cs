using System.Net;

namespace Vessel.Client;

/// <summary>
/// The daemon refused or failed a request. <see cref="Problem"/> carries its RFC 9457 problem
/// details; <see cref="Exception.Message"/> is the daemon's message a person can act on.
/// </summary>
public class VesselApiException : Exception
{
    /// <summary>Creates the exception for a response with <paramref name="statusCode"/>.</summary>
    /// <param name="statusCode">The HTTP status the daemon answered.</param>
    /// <param name="problem">The problem details it sent (a synthesized one when it sent none).</param>
    /// <param name="message">The message: what was attempted and the daemon's explanation.</param>
    public VesselApiException(HttpStatusCode statusCode, ApiProblem problem, string message)
        : base(message)
    {
        StatusCode = statusCode;
        Problem = problem;
    }

    /// <summary>The HTTP status the daemon answered (400 bad input, 404 unknown, 409 wrong state...).</summary>
    public HttpStatusCode StatusCode { get; }

    /// <summary>The problem details the daemon sent.</summary>
    public ApiProblem Problem { get; }
}
