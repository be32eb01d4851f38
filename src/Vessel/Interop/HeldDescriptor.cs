using System.Runtime.InteropServices;

namespace Vessel.Interop;

/// <summary>
/// A handle's file descriptor held for the length of a native call: the handle is referenced
/// (<see cref="SafeHandle.DangerousAddRef"/>) so that another thread's <c>Dispose</c> cannot
/// close the descriptor, and its number be reused by another file, while the call runs;
/// <see cref="Dispose"/> lets go. Use with <c>using</c>; a closed handle throws
/// <see cref="ObjectDisposedException"/> here, before any call.
/// </summary>
internal ref struct HeldDescriptor
{
    private readonly SafeHandle _handle;
    private bool _added;

    public HeldDescriptor(SafeHandle handle)
    {
        _handle = handle;
        handle.DangerousAddRef(ref _added);
        Fd = (int)handle.DangerousGetHandle();
    }

    public int Fd { get; }

    public void Dispose()
    {
        if (_added)
        {
            _added = false;
            _handle.DangerousRelease();
        }
    }
}
