using Grpc.Core;

namespace Vessel.Containerd;

/// <summary>Maps a gRPC status from containerd (grpc "doc/statuscodes.md") to a <see cref="VesselException"/>.</summary>
internal static class GrpcStatus
{
    public static VesselErrorReason ToReason(StatusCode code) => code switch
    {
        StatusCode.Cancelled => VesselErrorReason.Cancelled,
        StatusCode.InvalidArgument or StatusCode.OutOfRange => VesselErrorReason.InvalidInput,
        StatusCode.DeadlineExceeded => VesselErrorReason.Timeout,
        StatusCode.NotFound => VesselErrorReason.NotFound,
        StatusCode.AlreadyExists => VesselErrorReason.AlreadyExists,
        StatusCode.ResourceExhausted => VesselErrorReason.NoSpace,
        StatusCode.FailedPrecondition or StatusCode.Aborted => VesselErrorReason.Conflict,
        StatusCode.Unimplemented => VesselErrorReason.Unsupported,
        StatusCode.Unavailable => VesselErrorReason.Unavailable,
        StatusCode.DataLoss => VesselErrorReason.Corrupt,
        _ => VesselErrorReason.Unknown,
    };

    public static VesselException ToException(StatusCode code, string method, string message, Exception? inner = null)
    {
        string name = Enum.IsDefined(code) ? code.ToString() : ((int)code).ToString(System.Globalization.CultureInfo.InvariantCulture);
        string detail = message.Length > 0 ? message : "(no message)";
        return new VesselException(ToReason(code), $"containerd {ShortMethod(method)}: {name}: {detail}", inner);
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
