namespace Vessel.Tar;

/// <summary>Tar typeflag values (POSIX ustar, pax and GNU extensions).</summary>
public enum TarEntryType : byte
{
    RegularFile = (byte)'0',
    OldRegularFile = 0,
    HardLink = (byte)'1',
    SymbolicLink = (byte)'2',
    CharacterDevice = (byte)'3',
    BlockDevice = (byte)'4',
    Directory = (byte)'5',
    Fifo = (byte)'6',
    ContiguousFile = (byte)'7',
    PaxExtended = (byte)'x',
    PaxGlobal = (byte)'g',
    GnuLongName = (byte)'L',
    GnuLongLink = (byte)'K',
    GnuSparse = (byte)'S',
}
