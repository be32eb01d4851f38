using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Vessel.Common;

namespace Vessel.Oci;

/// <summary>
/// Decodes gzip data as <c>gzip -d</c> does (RFC 1952, section 2.2): one or more members,
/// each with its CRC-32 and length checked by zlib, then optionally zero padding. It refuses
/// what .NET's <see cref="System.IO.Compression.GZipStream"/> lets through silently: data that
/// ends inside a member (truncation) and bytes after the last member that are neither zeros
/// nor another member (trailing garbage). zlib is the one the runtime ships and its own
/// GZipStream calls (libSystem.IO.Compression.Native); calling it directly is what shows where
/// a member ends, which the stream API hides.
/// </summary>
internal sealed partial class GzipDecoderStream : ReadOnlyStream
{
    private const int InputSize = 256 << 10; // bigger reads from the blob cut the per-call cost through HTTP and hashing
    private const int GzipWindowBits = 31; // 15-bit window, gzip wrapper (zlib.h, inflateInit2)
    private const int ZOk = 0;
    private const int ZStreamEnd = 1;
    private const int ZBufError = -5;
    private const int ZNoFlush = 0;
    /// <summary>The <see cref="Exception.Source"/> of this decoder's errors, whose messages are complete.</summary>
    public const string ErrorSource = "gzip";

    private const string ZlibShim = "libSystem.IO.Compression.Native";

    private readonly Stream _source;
    private readonly string _what;
    private readonly byte[] _input = GC.AllocateArray<byte>(InputSize, pinned: true); // zlib holds pointers into it between calls
    private readonly unsafe byte* _inputStart;
    private unsafe ZStream* _z;
    private long _consumed; // compressed bytes before _input's unread part
    private int _members;
    private State _state = State.InMember;
    private bool _sourceEnded;
    private bool _sawPadding;

    public unsafe GzipDecoderStream(Stream source, string what)
    {
        _source = source;
        _what = what;
        _inputStart = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_input));
        _z = (ZStream*)NativeMemory.AllocZeroed((nuint)sizeof(ZStream));
        Init();
    }

    private enum State
    {
        InMember,
        BetweenMembers,
        Ended,
    }

    protected override int ReadCore(Span<byte> buffer)
    {
        while (true)
        {
            int n = Step(buffer);
            if (n >= 0)
            {
                return n;
            }
            Refill(_source.Read(InputSpace()));
        }
    }

    protected override async ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            int n = Step(buffer.Span);
            if (n >= 0)
            {
                return n;
            }
            Refill(await _source.ReadAsync(InputMemory(), cancellationToken));
        }
    }

    protected override unsafe ValueTask ReleaseAsync()
    {
        if (_z is not null)
        {
            _ = InflateEnd(_z);
            NativeMemory.Free(_z);
            _z = null;
        }
        return default;
    }

    /// <summary>Decodes into <paramref name="output"/>: bytes produced, 0 at the end, or -1 when it needs input.</summary>
    private unsafe int Step(Span<byte> output)
    {
        ObjectDisposedException.ThrowIf(_z is null, this);
        if (output.IsEmpty || _state == State.Ended)
        {
            return 0;
        }
        if (_state == State.BetweenMembers && !StartNextMember())
        {
            return _state == State.Ended ? 0 : -1;
        }
        if (_z->AvailIn == 0)
        {
            if (_sourceEnded)
            {
                throw Truncated();
            }
            return -1;
        }
        fixed (byte* o = output)
        {
            _z->NextOut = o;
            _z->AvailOut = (uint)output.Length;
            byte* before = _z->NextIn;
            int rc = Inflate(_z, ZNoFlush);
            _consumed += _z->NextIn - before;
            int produced = output.Length - (int)_z->AvailOut;
            if (rc == ZStreamEnd)
            {
                _members++;
                _state = State.BetweenMembers;
            }
            else if (rc != ZOk && rc != ZBufError)
            {
                string detail = _z->Msg is null ? $"zlib error {rc}" : Marshal.PtrToStringUTF8((nint)_z->Msg)!;
                throw Error($"the gzip data is corrupt ({detail} in member {_members + 1}, near compressed byte {_consumed})");
            }
            if (produced > 0)
            {
                return produced;
            }
            if (_state == State.BetweenMembers)
            {
                return Step(output); // an empty member
            }
            if (_sourceEnded)
            {
                throw Truncated();
            }
            return -1; // zlib wants more input

        }
    }

    private InvalidDataException Truncated() => Error(
        $"the gzip data is truncated: it ends inside member {_members + 1}, after {_consumed} compressed bytes");

    private InvalidDataException Error(string message) => new($"{_what}: {message}.") { Source = ErrorSource };

    /// <summary>After a member: another member, zero padding to the end (gzip accepts it), or garbage (refused).</summary>
    private unsafe bool StartNextMember()
    {
        while (_z->AvailIn > 0 && *_z->NextIn == 0)
        {
            _z->NextIn++;
            _z->AvailIn--;
            _consumed++;
            _sawPadding = true;
        }
        if (_z->AvailIn == 0)
        {
            if (_sourceEnded)
            {
                _state = State.Ended;
            }
            return false;
        }
        bool member = !_sawPadding && _z->NextIn[0] == 0x1f && (_z->AvailIn < 2 ? !_sourceEnded : _z->NextIn[1] == 0x8b);
        if (!member)
        {
            throw Error(
                $"trailing garbage after the gzip data: the bytes from offset {_consumed} on (after member {_members}) are neither another gzip member nor zero padding");
        }
        if (_z->AvailIn < 2)
        {
            return false; // the second magic byte is still to come
        }
        _ = InflateEnd(_z);
        Init();
        _state = State.InMember;
        return true;
    }

    private unsafe void Init()
    {
        byte* nextIn = _z->NextIn;
        uint availIn = _z->AvailIn;
        int rc = InflateInit2(_z, GzipWindowBits);
        if (rc != ZOk)
        {
            throw new InvalidOperationException($"zlib inflateInit2 failed ({rc})");
        }
        _z->NextIn = nextIn;
        _z->AvailIn = availIn;
    }

    /// <summary>Moves the unread input to the front and returns the space behind it.</summary>
    private Span<byte> InputSpace() => _input.AsSpan(Compact());

    private Memory<byte> InputMemory() => _input.AsMemory(Compact());

    private unsafe int Compact()
    {
        int unread = (int)_z->AvailIn;
        if (unread > 0)
        {
            _input.AsSpan((int)(_z->NextIn - _inputStart), unread).CopyTo(_input);
        }
        _z->NextIn = _inputStart;
        return unread;
    }

    private unsafe void Refill(int n)
    {
        if (n == 0)
        {
            _sourceEnded = true;
            return;
        }
        _z->AvailIn += (uint)n;
    }

    /// <summary>PAL_ZStream of the runtime's zlib shim (src/native/libs/System.IO.Compression.Native/pal_zlib.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct ZStream
    {
        public byte* NextIn;
        public byte* NextOut;
        public sbyte* Msg;
        public void* InternalState;
        public uint AvailIn;
        public uint AvailOut;
    }

    [LibraryImport(ZlibShim, EntryPoint = "CompressionNative_InflateInit2_")]
    private static unsafe partial int InflateInit2(ZStream* stream, int windowBits);

    [LibraryImport(ZlibShim, EntryPoint = "CompressionNative_Inflate")]
    private static unsafe partial int Inflate(ZStream* stream, int flush);

    [LibraryImport(ZlibShim, EntryPoint = "CompressionNative_InflateEnd")]
    private static unsafe partial int InflateEnd(ZStream* stream);
}
