using Microsoft.Extensions.Logging;

namespace Vessel.Blocks;

/// <summary>Log messages of the block store (event ids 3000-3099).</summary>
internal static partial class BlocksLog
{
    [LoggerMessage(3000, LogLevel.Information, "Published build {BuildId} (generation {Generation}, {DataBytes} data bytes)")]
    public static partial void BuildPublished(ILogger logger, Guid buildId, ulong generation, long dataBytes);

    [LoggerMessage(3001, LogLevel.Debug, "Verified the SHA-256 of build {BuildId} ({DataBytes} bytes)")]
    public static partial void BuildVerified(ILogger logger, Guid buildId, long dataBytes);

    [LoggerMessage(3003, LogLevel.Debug, "Build {BuildId}: its verified stamp matches the data file, so it was not hashed again")]
    public static partial void BuildVerifiedByStamp(ILogger logger, Guid buildId);

    [LoggerMessage(3004, LogLevel.Debug, "Build {BuildId}: could not save a verified stamp (the next process hashes the data again)")]
    public static partial void StampNotSaved(ILogger logger, Guid buildId);

    [LoggerMessage(3002, LogLevel.Information, "Exported overlay over {BaseBuildId} as build {BuildId}: {DirtyBytes} bytes of data")]
    public static partial void OverlayExported(ILogger logger, Guid baseBuildId, Guid buildId, long dirtyBytes);
}
