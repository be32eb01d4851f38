using Microsoft.Win32.SafeHandles;

namespace Vessel.Common;

/// <summary>Positional file reads that fill the whole buffer (<see cref="RandomAccess.Read(SafeFileHandle, Span{byte}, long)"/> may return fewer bytes).</summary>
internal static class PositionalRead
{
    /// <summary>
    /// Reads <paramref name="buffer"/> from <paramref name="handle"/> at <paramref name="offset"/>,
    /// looping over short reads; returns the bytes read, fewer than asked only where the file ends.
    /// </summary>
    public static int Fill(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer[total..], offset + total);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }
}
