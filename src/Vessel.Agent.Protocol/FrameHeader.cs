using System.Buffers.Binary;

namespace Vessel.Agent.Protocol;

/// <summary>
/// The 12-byte header in front of every frame on the control channel, big-endian
/// (docs/formats/agent-protocol.md, "Frames").
/// </summary>
public readonly record struct FrameHeader(uint Length, MessageType Type, uint StreamId)
{
    public const int Size = 12;

    /// <summary>Largest payload a frame may carry; larger frames are a protocol error.</summary>
    public const int MaxPayload = 1 << 20;

    private const int LengthOffset = 0;
    private const int TypeOffset = 4;
    private const int FlagsOffset = 5;
    private const int ReservedOffset = 6;
    private const int StreamIdOffset = 8;

    public static FrameHeader Read(ReadOnlySpan<byte> source)
    {
        uint length = BinaryPrimitives.ReadUInt32BigEndian(source[LengthOffset..]);
        if (length > MaxPayload)
        {
            throw new AgentProtocolException($"Frame payload of {length} bytes exceeds the {MaxPayload}-byte limit.");
        }
        if (source[FlagsOffset] != 0 || BinaryPrimitives.ReadUInt16BigEndian(source[ReservedOffset..]) != 0)
        {
            throw new AgentProtocolException("Frame header has non-zero reserved bits.");
        }
        return new FrameHeader(length, (MessageType)source[TypeOffset], BinaryPrimitives.ReadUInt32BigEndian(source[StreamIdOffset..]));
    }

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination[LengthOffset..], Length);
        destination[TypeOffset] = (byte)Type;
        destination[FlagsOffset] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[ReservedOffset..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(destination[StreamIdOffset..], StreamId);
    }
}

/// <summary>One received frame: its type, stream and payload.</summary>
public sealed record Frame(MessageType Type, uint StreamId, byte[] Payload);

/// <summary>The peer broke the protocol: bad framing, an unknown message, a payload that does not parse.</summary>
public sealed class AgentProtocolException : Exception
{
    public AgentProtocolException(string message)
        : base(message)
    {
    }
}
