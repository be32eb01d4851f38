using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace Vessel.Agent.Protocol;

/// <summary>Builds a message payload: big-endian integers, strings as u32 length + UTF-8.</summary>
public sealed class PayloadWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(64);

    public PayloadWriter U8(byte value)
    {
        _buffer.GetSpan(1)[0] = value;
        _buffer.Advance(1);
        return this;
    }

    public PayloadWriter Bool(bool value) => U8(value ? (byte)1 : (byte)0);

    public PayloadWriter U32(uint value) => BigEndian(value);

    public PayloadWriter I32(int value) => BigEndian(value);

    public PayloadWriter U64(ulong value) => BigEndian(value);

    public PayloadWriter I64(long value) => BigEndian(value);

    public PayloadWriter String(string value)
    {
        int count = Encoding.UTF8.GetByteCount(value);
        U32((uint)count);
        Encoding.UTF8.GetBytes(value, _buffer.GetSpan(count));
        _buffer.Advance(count);
        return this;
    }

    public PayloadWriter Strings(IReadOnlyList<string> values) => List(values, static (w, v) => w.String(v));

    /// <summary>A count (u32) and then each item as <paramref name="write"/> writes it.</summary>
    public PayloadWriter List<T>(IReadOnlyList<T> items, Action<PayloadWriter, T> write)
    {
        U32((uint)items.Count);
        foreach (T item in items)
        {
            write(this, item);
        }
        return this;
    }

    /// <summary>
    /// The optional trailing container name of a request (pods): written only when not empty, so a
    /// request without one has the bytes it always had.
    /// </summary>
    public PayloadWriter OptionalContainer(string container) => container.Length == 0 ? this : String(container);

    public byte[] ToArray() => _buffer.WrittenSpan.ToArray();

    /// <summary>The payload that <paramref name="write"/> writes: the Encode of a body that also travels inside others (<see cref="TerminalSize"/>, <see cref="FileEntry"/>).</summary>
    public static byte[] Build(Action<PayloadWriter> write)
    {
        var w = new PayloadWriter();
        write(w);
        return w.ToArray();
    }

    /// <summary>An integer in its own width (4 bytes for a uint, 8 for a long...), big-endian.</summary>
    private PayloadWriter BigEndian<T>(T value)
        where T : IBinaryInteger<T>
    {
        int written = value.WriteBigEndian(_buffer.GetSpan(value.GetByteCount()));
        _buffer.Advance(written);
        return this;
    }
}

/// <summary>Reads one value of a payload: a message body's fields in order (see <see cref="PayloadReader.ReadWhole"/>).</summary>
public delegate T PayloadRead<out T>(ref PayloadReader reader);

/// <summary>Reads a message payload written by <see cref="PayloadWriter"/>; every read is bounds-checked.</summary>
public ref struct PayloadReader
{
    private readonly ReadOnlySpan<byte> _source;
    private int _position;

    public PayloadReader(ReadOnlySpan<byte> source)
    {
        _source = source;
        _position = 0;
    }

    public readonly bool End => _position == _source.Length;

    public byte U8() => Take(1)[0];

    public bool Bool() => U8() switch
    {
        0 => false,
        1 => true,
        byte b => throw new AgentProtocolException($"Bad boolean byte {b}."),
    };

    public uint U32() => BinaryPrimitives.ReadUInt32BigEndian(Take(4));

    public int I32() => BinaryPrimitives.ReadInt32BigEndian(Take(4));

    public ulong U64() => BinaryPrimitives.ReadUInt64BigEndian(Take(8));

    public long I64() => BinaryPrimitives.ReadInt64BigEndian(Take(8));

    public string String()
    {
        uint length = U32();
        if (length > _source.Length - _position)
        {
            throw new AgentProtocolException($"String of {length} bytes runs past the end of the payload.");
        }
        return Encoding.UTF8.GetString(Take((int)length));
    }

    /// <summary>A list of strings: each takes at least its 4-byte length.</summary>
    public string[] Strings() => [.. List(4, "strings", static (ref PayloadReader r) => r.String())];

    /// <summary>
    /// A list written by <see cref="PayloadWriter.List"/>: a count, then each item by
    /// <paramref name="read"/>. A count that could not fit in the bytes left, at
    /// <paramref name="minItemBytes"/> an item, is refused before anything is allocated.
    /// </summary>
    public List<T> List<T>(int minItemBytes, string what, PayloadRead<T> read)
    {
        uint count = U32();
        if (count > (_source.Length - _position) / minItemBytes)
        {
            throw new AgentProtocolException($"List of {count} {what} runs past the end of the payload.");
        }
        var list = new List<T>((int)count);
        for (uint i = 0; i < count; i++)
        {
            list.Add(read(ref this));
        }
        return list;
    }

    /// <summary>The optional trailing container name (see <see cref="PayloadWriter.OptionalContainer"/>); empty when absent.</summary>
    public string OptionalContainer() => End ? string.Empty : String();

    /// <summary>
    /// Reads a whole payload with <paramref name="read"/> and refuses bytes left after it: the
    /// one body of every message's Decode.
    /// </summary>
    public static T ReadWhole<T>(ReadOnlySpan<byte> payload, PayloadRead<T> read)
    {
        var r = new PayloadReader(payload);
        T value = read(ref r);
        r.ExpectEnd();
        return value;
    }

    public readonly void ExpectEnd()
    {
        if (!End)
        {
            throw new AgentProtocolException($"{_source.Length - _position} unexpected bytes after the message.");
        }
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > _source.Length - _position)
        {
            throw new AgentProtocolException("Message payload is truncated.");
        }
        ReadOnlySpan<byte> slice = _source.Slice(_position, count);
        _position += count;
        return slice;
    }
}
