using Vessel.Blocks;

namespace Vessel.Oci;

/// <summary>
/// A source whose whole content is one local file that only a full read can name (a root
/// filesystem tarball, named by its sha256): a cache that hashed it once can tell the same file
/// again by its <see cref="FileIdentity"/> (device, inode, size, modification and change times),
/// which no write can leave as it was, and skip reading it.
/// </summary>
internal interface IFileImageSource : IImageSource
{
    /// <summary>The file's identity now (statx through an open handle); null where the kernel cannot say or the file is gone.</summary>
    public FileIdentity? GetIdentity();

    /// <summary>
    /// Resolves the source to <paramref name="contentDigest"/>, which a cache recorded for the
    /// file's current identity, without reading the file: what <see cref="IImageSource.ResolveAsync"/>
    /// would return. A layer read afterwards still checks the content against it.
    /// </summary>
    public Task<ResolvedImage> ResolveKnownAsync(string contentDigest, CancellationToken cancellationToken);
}
