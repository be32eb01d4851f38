using Vessel.Blocks;

namespace Vessel.Nbd;

/// <summary>
/// What the NBD server serves under one name: any <see cref="IBlockDevice"/> (a flat file, a
/// read-only build, a copy-on-write overlay), owned by the caller. The server checks ranges,
/// read-only-ness and sizes before calling the device; an exception becomes an NBD error for
/// that request only.
/// </summary>
/// <param name="Name">The name clients ask for (<c>nbd+unix:///NAME?socket=...</c>); "" is the default export.</param>
internal sealed record NbdExport(string Name, IBlockDevice Device, bool ReadOnly = false, string Description = "")
{
    public bool IsReadOnly => ReadOnly || Device.IsReadOnly;

    public long Size => Device.Size;

    /// <summary>The block size clients should align to (reported as the preferred size).</summary>
    public int PreferredBlockSize => Device.BlockSize;
}
