using System.Buffers;
using System.Buffers.Binary;
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

    public PayloadWriter U32(uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
        return this;
    }

    public PayloadWriter I32(int value)
    {
        BinaryPrimitives.WriteInt32BigEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
        return this;
    }

    public PayloadWriter U64(ulong value)
    {
        BinaryPrimitives.WriteUInt64BigEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
        return this;
    }

    public PayloadWriter I64(long value)
    {
        BinaryPrimitives.WriteInt64BigEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
        return this;
    }

    public PayloadWriter String(string value)
    {
        int count = Encoding.UTF8.GetByteCount(value);
        U32((uint)count);
        Encoding.UTF8.GetBytes(value, _buffer.GetSpan(count));
        _buffer.Advance(count);
        return this;
    }

    public PayloadWriter Strings(IReadOnlyList<string> values)
    {
        U32((uint)values.Count);
        foreach (string v in values)
        {
            String(v);
        }
        return this;
    }

    /// <summary>
    /// The optional trailing container name of a request (pods): written only when not empty, so a
    /// request without one has the bytes it always had.
    /// </summary>
    public PayloadWriter OptionalContainer(string container) => container.Length == 0 ? this : String(container);

    public byte[] ToArray() => _buffer.WrittenSpan.ToArray();
}

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

    public string[] Strings()
    {
        uint count = U32();
        // Each string takes at least its 4-byte length: a larger count cannot be honest.
        if (count > (_source.Length - _position) / 4)
        {
            throw new AgentProtocolException($"List of {count} strings runs past the end of the payload.");
        }
        var result = new string[count];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = String();
        }
        return result;
    }

    /// <summary>The optional trailing container name (see <see cref="PayloadWriter.OptionalContainer"/>); empty when absent.</summary>
    public string OptionalContainer() => End ? string.Empty : String();

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
