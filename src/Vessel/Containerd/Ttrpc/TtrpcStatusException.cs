namespace Vessel.Containerd.Ttrpc;

/// <summary>
/// An RPC that failed with a google.rpc status code: thrown by a handler to answer with that
/// status, and by <see cref="TtrpcClient"/> when the server answered with one. containerd maps
/// the codes to its errdefs (5 NOT_FOUND, 6 ALREADY_EXISTS, 9 FAILED_PRECONDITION, 12 UNIMPLEMENTED).
/// </summary>
internal sealed class TtrpcStatusException : Exception
{
    public const int Unknown = 2;
    public const int InvalidArgument = 3;
    public const int NotFound = 5;
    public const int AlreadyExists = 6;
    public const int FailedPrecondition = 9;
    public const int Unimplemented = 12;
    public const int Internal = 13;
    public const int Unavailable = 14;

    public TtrpcStatusException(int code, string message)
        : base(message)
    {
        Code = code;
    }

    public int Code { get; }
}
