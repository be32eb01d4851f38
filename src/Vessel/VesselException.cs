namespace Vessel;

/// <summary>Why a Vessel operation failed; one exception type carries the reason.</summary>
public enum VesselErrorReason
{
    Unknown = 0,
    InvalidInput,
    NotFound,
    AlreadyExists,
    ToolMissing,
    ToolFailed,
    Protocol,
    Timeout,
    Cancelled,
    Conflict,
    Unavailable,
    Corrupt,
    NoSpace,
    Unsupported,
}

/// <summary>A failure of Vessel or one of its peers, with a message a user can act on.</summary>
public class VesselException : Exception
{
    public VesselException(VesselErrorReason reason, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Reason = reason;
    }

    public VesselErrorReason Reason { get; }
}
