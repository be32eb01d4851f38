using System.Buffers.Binary;

namespace Vessel.Nbd;

/// <summary>NBD request header: 28 bytes, big-endian (proto.md, "Request message").</summary>
internal readonly record struct NbdRequest(NbdCommandFlags Flags, NbdCommand Command, ulong Cookie, ulong Offset, uint Length)
{
    public const int Size = 28;
    public const uint Magic = 0x2560_9513;

    public static NbdRequest Read(ReadOnlySpan<byte> source)
    {
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(source);
        if (magic != Magic)
        {
            throw new NbdProtocolException($"Bad request magic 0x{magic:x8}.");
        }
        return new NbdRequest(
            (NbdCommandFlags)BinaryPrimitives.ReadUInt16BigEndian(source[4..]),
            (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[16..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[24..]));
    }

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, Magic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)Command);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Cookie);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], Offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[24..], Length);
    }
}

/// <summary>Simple reply header: 16 bytes, big-endian (proto.md, "Simple reply message").</summary>
internal readonly record struct NbdSimpleReply(NbdError Error, ulong Cookie)
{
    public const int Size = 16;

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdProtocol.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)Error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Cookie);
    }
}

/// <summary>Structured reply chunk header: 20 bytes, big-endian (proto.md, "Structured reply chunk message").</summary>
internal readonly record struct NbdStructuredReplyHeader(bool Done, NbdReplyType Type, ulong Cookie, uint Length)
{
    public const int Size = 20;
    private const ushort FlagDone = 1;

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdProtocol.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], Done ? FlagDone : (ushort)0);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)Type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Cookie);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], Length);
    }
}

/// <summary>Option request header after the client's IHAVEOPT: 16 bytes, big-endian.</summary>
internal readonly record struct NbdOptionHeader(NbdOption Option, uint Length)
{
    public const int Size = 16;

    public static NbdOptionHeader Read(ReadOnlySpan<byte> source)
    {
        ulong magic = BinaryPrimitives.ReadUInt64BigEndian(source);
        if (magic != NbdProtocol.IHaveOpt)
        {
            throw new NbdProtocolException($"Bad option magic 0x{magic:x16}.");
        }
        return new NbdOptionHeader((NbdOption)BinaryPrimitives.ReadUInt32BigEndian(source[8..]), BinaryPrimitives.ReadUInt32BigEndian(source[12..]));
    }
}

/// <summary>Option reply header: 20 bytes, big-endian (proto.md, "Option reply").</summary>
internal readonly record struct NbdOptionReplyHeader(NbdOption Option, NbdOptionReply Reply, uint Length)
{
    public const int Size = 20;

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, NbdProtocol.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], (uint)Option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], (uint)Reply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], Length);
    }
}

/// <summary>A client broke the protocol; the connection is closed.</summary>
internal sealed class NbdProtocolException(string message) : VesselException(VesselErrorReason.Protocol, message);
