namespace Vessel.Containerd;

/// <summary>gRPC status codes (grpc "doc/statuscodes.md").</summary>
internal enum GrpcStatusCode
{
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// <summary>Maps a gRPC status from containerd to a <see cref="VesselException"/>.</summary>
internal static class GrpcStatus
{
    public static VesselErrorReason ToReason(GrpcStatusCode code) => code switch
    {
        GrpcStatusCode.Cancelled => VesselErrorReason.Cancelled,
        GrpcStatusCode.InvalidArgument or GrpcStatusCode.OutOfRange => VesselErrorReason.InvalidInput,
        GrpcStatusCode.DeadlineExceeded => VesselErrorReason.Timeout,
        GrpcStatusCode.NotFound => VesselErrorReason.NotFound,
        GrpcStatusCode.AlreadyExists => VesselErrorReason.AlreadyExists,
        GrpcStatusCode.ResourceExhausted => VesselErrorReason.NoSpace,
        GrpcStatusCode.FailedPrecondition or GrpcStatusCode.Aborted => VesselErrorReason.Conflict,
        GrpcStatusCode.Unimplemented => VesselErrorReason.Unsupported,
        GrpcStatusCode.Unavailable => VesselErrorReason.Unavailable,
        GrpcStatusCode.DataLoss => VesselErrorReason.Corrupt,
        _ => VesselErrorReason.Unknown,
    };

    public static VesselException ToException(GrpcStatusCode code, string method, string message)
    {
        string name = Enum.IsDefined(code) ? code.ToString() : ((int)code).ToString(System.Globalization.CultureInfo.InvariantCulture);
        string detail = message.Length > 0 ? message : "(no message)";
        return new VesselException(ToReason(code), $"containerd {ShortMethod(method)}: {name}: {detail}");
    }

    /// <summary>"/containerd.services.snapshots.v1.Snapshots/View" becomes "Snapshots/View".</summary>
    public static string ShortMethod(string method)
    {
        string m = method.TrimStart('/');
        int slash = m.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
        {
            return m;
        }
        string service = m[..slash];
        int dot = service.LastIndexOf('.');
        return service[(dot + 1)..] + m[slash..];
    }
}
