using System.Buffers.Binary;

namespace Vessel.Containerd.Ttrpc;

/// <summary>ttrpc message types (containerd/ttrpc PROTOCOL.md, "Message Types").</summary>
internal enum TtrpcMessageType : byte
{
    Request = 0x01,
    Response = 0x02,
    Data = 0x03,
}

/// <summary>
/// A ttrpc frame header: 10 bytes, data length and stream id big-endian 4-byte unsigned
/// integers, then the message type and flags bytes (containerd/ttrpc PROTOCOL.md, "Message Frame").
/// </summary>
internal readonly record struct TtrpcFrameHeader(uint Length, uint StreamId, TtrpcMessageType Type, byte Flags)
{
    public const int Size = 10;

    /// <summary>"The maximum data length is 4MB and any larger size should be rejected."</summary>
    public const int MaxDataLength = 4 << 20;

    /// <summary>Request flag: non-unary, no more data expected from the remote.</summary>
    public const byte FlagRemoteClosed = 0x01;

    /// <summary>Request flag: non-unary, the remote is still sending data.</summary>
    public const byte FlagRemoteOpen = 0x02;

    /// <summary>Data flag: the message has no data.</summary>
    public const byte FlagNoData = 0x04;

    public static TtrpcFrameHeader Read(ReadOnlySpan<byte> source)
    {
        return new TtrpcFrameHeader(
            BinaryPrimitives.ReadUInt32BigEndian(source),
            BinaryPrimitives.ReadUInt32BigEndian(source[4..]),
            (TtrpcMessageType)source[8],
            source[9]);
    }

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, Length);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], StreamId);
        destination[8] = (byte)Type;
        destination[9] = Flags;
    }
}
