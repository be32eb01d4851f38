namespace Vessel.Nbd;

/// <summary>Magic numbers and limits of the NBD protocol (NetworkBlockDevice doc/proto.md).</summary>
internal static class NbdProtocol
{
    public const ulong NbdMagic = 0x4e42_444d_4147_4943; // "NBDMAGIC"
    public const ulong IHaveOpt = 0x4948_4156_454F_5054; // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x0003_e889_0455_65a9;
    public const uint SimpleReplyMagic = 0x6744_6698;
    public const uint StructuredReplyMagic = 0x668e_33ef;
    public const int SimpleReplySize = 16;
    public const int StructuredReplyHeaderSize = 20;
    public const int MaxPayload = 32 << 20; // the largest read or write we accept (qemu's limit too)
    public const int MaxOptionLength = 64 << 10; // options carry names and queries, never data
    public const uint BaseAllocationContextId = 1;
    public const string BaseAllocation = "base:allocation";
}

/// <summary>Handshake flags (proto.md, "Newstyle negotiation").</summary>
[Flags]
internal enum NbdHandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Client flags sent after the server's handshake flags.</summary>
[Flags]
internal enum NbdClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Option types (proto.md, "Option types").</summary>
internal enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
}

/// <summary>Option reply types (proto.md, "Option reply types").</summary>
internal enum NbdOptionReply : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsupported = (1u << 31) + 1,
    ErrPolicy = (1u << 31) + 2,
    ErrInvalid = (1u << 31) + 3,
    ErrPlatform = (1u << 31) + 4,
    ErrTlsRequired = (1u << 31) + 5,
    ErrUnknown = (1u << 31) + 6,
    ErrShutdown = (1u << 31) + 7,
    ErrBlockSizeRequired = (1u << 31) + 8,
    ErrTooBig = (1u << 31) + 9,
}

/// <summary>Information types of NBD_OPT_INFO and NBD_OPT_GO.</summary>
internal enum NbdInfo : ushort
{
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
}

/// <summary>Transmission flags (proto.md, "Transmission flags").</summary>
[Flags]
internal enum NbdTransmissionFlags : ushort
{
    None = 0,
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
}

/// <summary>Request types (proto.md, "Request types").</summary>
internal enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
}

/// <summary>Command flags (proto.md, "Command flags").</summary>
[Flags]
internal enum NbdCommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    DontFragment = 1 << 2,
    RequestOne = 1 << 3,
    FastZero = 1 << 4,
}

/// <summary>Structured reply chunk types (proto.md, "Structured reply types").</summary>
internal enum NbdReplyType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    Error = (1 << 15) + 1,
}

/// <summary>Error values sent to clients (proto.md, "Error values"): Linux errno numbers.</summary>
internal enum NbdError : uint
{
    None = 0,
    Perm = 1,
    IO = 5,
    NoMemory = 12,
    Invalid = 22,
    NoSpace = 28,
    Overflow = 75,
    NotSupported = 95,
    Shutdown = 108,
}

/// <summary>Status flags of the <c>base:allocation</c> context.</summary>
[Flags]
internal enum NbdAllocationFlags : uint
{
    Data = 0,
    Hole = 1 << 0,
    Zero = 1 << 1,
}
