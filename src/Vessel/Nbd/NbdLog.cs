using Microsoft.Extensions.Logging;

namespace Vessel.Nbd;

/// <summary>Log messages of the NBD server (event ids 3100-3199). Never logs guest data.</summary>
internal static partial class NbdLog
{
    [LoggerMessage(3100, LogLevel.Information, "NBD server listening on {Endpoint}")]
    public static partial void Listening(ILogger logger, string endpoint);

    [LoggerMessage(3101, LogLevel.Debug, "NBD client {Peer} connected")]
    public static partial void Connected(ILogger logger, string peer);

    [LoggerMessage(3102, LogLevel.Debug, "NBD client {Peer} disconnected")]
    public static partial void Disconnected(ILogger logger, string peer);

    [LoggerMessage(3103, LogLevel.Debug, "NBD client {Peer} sent option {Option}")]
    public static partial void Option(ILogger logger, string peer, NbdOption option);

    [LoggerMessage(3104, LogLevel.Debug, "NBD client {Peer}: option {Option} refused with {Error}: {Message}")]
    public static partial void OptionRefused(ILogger logger, string peer, NbdOption option, NbdOptionReply error, string message);

    [LoggerMessage(3105, LogLevel.Debug, "NBD client {Peer} entered transmission on export '{Export}' (structured replies: {Structured})")]
    public static partial void Transmission(ILogger logger, string peer, string export, bool structured);

    [LoggerMessage(3106, LogLevel.Warning, "NBD client {Peer} broke the protocol and was disconnected: {Message}")]
    public static partial void ProtocolViolation(ILogger logger, string peer, string message);

    [LoggerMessage(3107, LogLevel.Debug, "NBD client {Peer} went away: {Message}")]
    public static partial void ClientGone(ILogger logger, string peer, string message);

    [LoggerMessage(3108, LogLevel.Error, "NBD connection from {Peer} failed")]
    public static partial void ConnectionFailed(ILogger logger, string peer, Exception exception);

    [LoggerMessage(3109, LogLevel.Debug, "NBD client {Peer}: {Command} at {Offset}+{Length} refused with {Error}")]
    public static partial void RequestRefused(ILogger logger, string peer, NbdCommand command, ulong offset, uint length, NbdError error);

    [LoggerMessage(3110, LogLevel.Error, "NBD client {Peer}: {Command} at {Offset}+{Length} failed")]
    public static partial void RequestFailed(ILogger logger, string peer, NbdCommand command, ulong offset, uint length, Exception exception);

    [LoggerMessage(3111, LogLevel.Warning, "NBD server refused a connection: {Max} connections are open")]
    public static partial void TooManyConnections(ILogger logger, int max);

    [LoggerMessage(3114, LogLevel.Warning, "NBD server refused a connection from {Peer}: {Reason}")]
    public static partial void PeerRefused(ILogger logger, string peer, string reason);

    [LoggerMessage(3112, LogLevel.Warning, "NBD server accept failed")]
    public static partial void AcceptFailed(ILogger logger, Exception exception);

    [LoggerMessage(3113, LogLevel.Warning, "NBD server disposal gave up waiting for {Count} connections")]
    public static partial void DisposeTimedOut(ILogger logger, int count);
}
