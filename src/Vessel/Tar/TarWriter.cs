using System.Buffers;
using System.Globalization;
using System.Text;

namespace Vessel.Tar;

/// <summary>
/// Writes the tar archives Vessel makes itself (a template COPY step's files, streamed into the
/// guest's tar): ustar headers (POSIX.1-2017 "pax", "ustar Interchange Format"), with a pax
/// extended header ('x') in front of an entry whose name or link target does not fit a ustar
/// field or is not ASCII, or whose size needs more than 11 octal digits. Entries are owned by
/// root; the archive ends with two zero blocks on dispose.
/// </summary>
public sealed class TarWriter : IAsyncDisposable
{
    private const int NameField = 100;
    private const long MaxOctalSize = (1L << 33) - 1; // 11 octal digits

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly byte[] _header = new byte[TarReader.BlockSize];
    private bool _finished;

    public TarWriter(Stream stream, bool leaveOpen = false)
    {
        _stream = stream;
        _leaveOpen = leaveOpen;
    }

    public Task WriteDirectoryAsync(string name, UnixFileMode mode, DateTimeOffset modified, CancellationToken cancellationToken)
        => WriteEntryAsync(TarEntryType.Directory, name.EndsWith('/') ? name : name + "/", mode, modified, null, null, 0, cancellationToken);

    public Task WriteSymlinkAsync(string name, string target, UnixFileMode mode, DateTimeOffset modified, CancellationToken cancellationToken)
        => WriteEntryAsync(TarEntryType.SymbolicLink, name, mode, modified, target, null, 0, cancellationToken);

    /// <summary>Writes a regular file of exactly <paramref name="length"/> bytes from <paramref name="data"/>; a file that changes length meanwhile fails.</summary>
    public Task WriteFileAsync(string name, UnixFileMode mode, DateTimeOffset modified, Stream data, long length, CancellationToken cancellationToken)
        => WriteEntryAsync(TarEntryType.RegularFile, name, mode, modified, null, data, length, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (!_finished)
        {
            _finished = true;
            await _stream.WriteAsync(new byte[2 * TarReader.BlockSize]);
            await _stream.FlushAsync();
        }
        if (!_leaveOpen)
        {
            await _stream.DisposeAsync();
        }
    }

    private async Task WriteEntryAsync(
        TarEntryType type, string name, UnixFileMode mode, DateTimeOffset modified, string? link, Stream? data, long length,
        CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_finished, this);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        long seconds = Math.Max(0, modified.ToUnixTimeSeconds());
        byte[]? pax = PaxRecords(name, link, length);
        if (pax is not null)
        {
            FillHeader(TarEntryType.PaxExtended, "PaxHeader", 0x1A4, seconds, null, pax.Length);
            await _stream.WriteAsync(_header, cancellationToken);
            await WritePaddedAsync(pax, cancellationToken);
        }
        FillHeader(type, name, (int)mode & 0xFFF, seconds, link, length);
        await _stream.WriteAsync(_header, cancellationToken);
        if (data is not null)
        {
            await CopyDataAsync(data, length, name, cancellationToken);
        }
    }

    /// <summary>The pax records an entry needs, or null when its ustar header says everything.</summary>
    private static byte[]? PaxRecords(string name, string? link, long length)
    {
        var records = new StringBuilder();
        if (!FitsField(name))
        {
            AppendRecord(records, "path", name);
        }
        if (link is not null && !FitsField(link))
        {
            AppendRecord(records, "linkpath", link);
        }
        if (length > MaxOctalSize)
        {
            AppendRecord(records, "size", length.ToString(CultureInfo.InvariantCulture));
        }
        return records.Length == 0 ? null : Encoding.UTF8.GetBytes(records.ToString());
    }

    private static bool FitsField(string text) => text.Length <= NameField && Ascii.IsValid(text) && !text.Contains('\0', StringComparison.Ordinal);

    /// <summary>"LEN key=value\n", where LEN counts the whole record, its own digits included.</summary>
    private static void AppendRecord(StringBuilder records, string key, string value)
    {
        int body = Encoding.UTF8.GetByteCount(value) + key.Length + 3; // ' ', '=', '\n'
        int length = body + 1;
        while (length != body + length.ToString(CultureInfo.InvariantCulture).Length)
        {
            length = body + length.ToString(CultureInfo.InvariantCulture).Length;
        }
        records.Append(CultureInfo.InvariantCulture, $"{length} {key}={value}\n");
    }

    private void FillHeader(TarEntryType type, string name, int mode, long seconds, string? link, long size)
    {
        Span<byte> h = _header;
        h.Clear();
        WriteText(h[..NameField], name);
        WriteOctal(h.Slice(100, 8), mode);
        WriteOctal(h.Slice(108, 8), 0); // uid: root
        WriteOctal(h.Slice(116, 8), 0); // gid: root
        WriteOctal(h.Slice(124, 12), size > MaxOctalSize ? 0 : size);
        WriteOctal(h.Slice(136, 12), seconds);
        h[156] = (byte)type;
        if (link is not null)
        {
            WriteText(h.Slice(157, NameField), link);
        }
        "ustar\0"u8.CopyTo(h[257..]);
        "00"u8.CopyTo(h[263..]);
        "root"u8.CopyTo(h[265..]);
        "root"u8.CopyTo(h[297..]);
        // The checksum is the byte sum with its own field read as eight spaces.
        h.Slice(148, 8).Fill((byte)' ');
        long sum = 0;
        foreach (byte b in h)
        {
            sum += b;
        }
        WriteOctal(h.Slice(148, 7), sum);
    }

    /// <summary>A field's leading bytes; what does not fit is in the pax header already.</summary>
    private static void WriteText(Span<byte> field, string text)
    {
        int n = Math.Min(Encoding.UTF8.GetByteCount(text), field.Length);
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        bytes.AsSpan(0, n).CopyTo(field);
    }

    /// <summary>Zero-padded octal digits, then a NUL, filling the field.</summary>
    private static void WriteOctal(Span<byte> field, long value)
    {
        int digits = field.Length - 1;
        for (int i = digits - 1; i >= 0; i--)
        {
            field[i] = (byte)('0' + (value & 7));
            value >>= 3;
        }
        field[digits] = 0;
    }

    private async Task CopyDataAsync(Stream data, long length, string name, CancellationToken cancellationToken)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            long left = length;
            while (left > 0)
            {
                int n = await data.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), cancellationToken);
                if (n == 0)
                {
                    throw new IOException($"'{name}' became shorter while it was archived ({length - left} of {length} bytes).");
                }
                await _stream.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
                left -= n;
            }
            if (await data.ReadAsync(buffer.AsMemory(0, 1), cancellationToken) != 0)
            {
                throw new IOException($"'{name}' became longer while it was archived (more than {length} bytes).");
            }
            await WritePaddingAsync(length, cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task WritePaddedAsync(byte[] data, CancellationToken cancellationToken)
    {
        await _stream.WriteAsync(data, cancellationToken);
        await WritePaddingAsync(data.Length, cancellationToken);
    }

    private async Task WritePaddingAsync(long length, CancellationToken cancellationToken)
    {
        int padding = (int)((TarReader.BlockSize - (length % TarReader.BlockSize)) % TarReader.BlockSize);
        if (padding > 0)
        {
            await _stream.WriteAsync(new byte[padding], cancellationToken);
        }
    }
}
