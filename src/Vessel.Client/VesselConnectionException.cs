namespace Vessel.Client;

/// <summary>
/// The daemon could not be reached, or the connection broke in the middle of a request or a
/// stream (the daemon stopped or crashed). The message names the endpoint and what was going on.
/// </summary>
public sealed class VesselConnectionException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What failed, with the daemon's endpoint.</param>
    /// <param name="innerException">The transport error.</param>
    public VesselConnectionException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
