using Grpc.Core;

namespace Vessel.Containerd.Ttrpc;

/// <summary>
/// An RPC that failed with a google.rpc status code (the gRPC codes, <see cref="StatusCode"/>):
/// thrown by a handler to answer with that status, and by <see cref="TtrpcClient"/> when the
/// server answered with one. containerd maps the codes to its errdefs (5 NOT_FOUND,
/// 6 ALREADY_EXISTS, 9 FAILED_PRECONDITION, 12 UNIMPLEMENTED).
/// </summary>
internal sealed class TtrpcStatusException(StatusCode code, string message) : Exception(message)
{
    public StatusCode Code { get; } = code;
}
