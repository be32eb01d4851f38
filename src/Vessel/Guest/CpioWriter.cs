using System.Globalization;
using System.Text;

namespace Vessel.Guest;

/// <summary>
/// Writes a cpio archive in the "newc" format the Linux kernel unpacks as an initramfs
/// (kernel Documentation/driver-api/early-userspace/buffer-format.rst; docs/formats/cpio-initramfs.md).
/// Entries are written in the order added; a parent directory must be added before its children.
/// A writer that failed is faulted and refuses further calls, so a torn archive is never finished.
/// </summary>
internal sealed class CpioWriter : IDisposable
{
    /// <summary>The fixed header: a 6-byte magic and 13 fields of 8 hex digits.</summary>
    public const int HeaderSize = 110;
    public const string Magic = "070701";
    public const string TrailerName = "TRAILER!!!";

    private const uint TypeDirectory = 0x4000;
    private const uint TypeRegular = 0x8000;
    private const uint TypeSymlink = 0xA000;
    private const uint TypeCharDevice = 0x2000;

    private readonly Stream _output;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private uint _nextInode = 1;
    private long _position;
    private Exception? _fault;
    private bool _finished;

    public CpioWriter(Stream output)
    {
        _output = output;
    }

    public void AddDirectory(string path, uint mode = 0x1ED) => Guard(() => WriteEntry(path, TypeDirectory | (mode & 0xFFF), 2, [], 0, 0));

    public void AddFile(string path, byte[] data, uint mode = 0x1A4) => Guard(() => WriteEntry(path, TypeRegular | (mode & 0xFFF), 1, data, 0, 0));

    public void AddSymlink(string path, string target) => Guard(() => WriteEntry(path, TypeSymlink | 0x1FF, 1, Encoding.UTF8.GetBytes(target), 0, 0));

    public void AddCharDevice(string path, uint major, uint minor, uint mode = 0x180) => Guard(() => WriteEntry(path, TypeCharDevice | (mode & 0xFFF), 1, [], major, minor));

    /// <summary>Writes the trailer entry and pads the archive to a 512-byte boundary.</summary>
    public void Finish() => Guard(() =>
    {
        WriteEntry(TrailerName, 0, 1, [], 0, 0, isTrailer: true);
        int pad = (int)((512 - (_position % 512)) % 512);
        Write(new byte[pad]);
        _output.Flush();
        _finished = true;
    });

    private void WriteEntry(string path, uint mode, uint links, byte[] data, uint rdevMajor, uint rdevMinor, bool isTrailer = false)
    {
        if (_finished)
        {
            throw new InvalidOperationException("The archive is already finished.");
        }
        string name = isTrailer ? path : Normalize(path);
        if (!isTrailer && !_names.Add(name))
        {
            throw new InvalidDataException($"initramfs entry '{name}' added twice");
        }
        byte[] nameBytes = Encoding.UTF8.GetBytes(name + "\0");
        var header = new StringBuilder(HeaderSize);
        header.Append(Magic);
        foreach (uint field in new uint[]
        {
            isTrailer ? 0 : _nextInode++, // c_ino
            mode,                          // c_mode
            0,                             // c_uid
            0,                             // c_gid
            links,                         // c_nlink
            0,                             // c_mtime: fixed, so the same inputs give the same bytes
            (uint)data.Length,             // c_filesize
            0, 0,                          // c_devmajor, c_devminor
            rdevMajor, rdevMinor,          // c_rdevmajor, c_rdevminor
            (uint)nameBytes.Length,        // c_namesize, including the NUL
            0,                             // c_check: only for the "070702" variant
        })
        {
            header.Append(field.ToString("x8", CultureInfo.InvariantCulture));
        }
        Write(Encoding.ASCII.GetBytes(header.ToString()));
        Write(nameBytes);
        Pad();
        Write(data);
        Pad();
    }

    private static string Normalize(string path)
    {
        string name = path.Trim('/');
        if (name.Length == 0 || name.Split('/').Any(p => p is "" or "." or ".."))
        {
            throw new InvalidDataException($"initramfs entry name '{path}' is not a clean relative path");
        }
        return name;
    }

    private void Pad()
    {
        int pad = (int)((4 - (_position % 4)) % 4);
        if (pad > 0)
        {
            Write(new byte[pad]);
        }
    }

    private void Write(byte[] bytes)
    {
        _output.Write(bytes);
        _position += bytes.Length;
    }

    private void Guard(Action action)
    {
        if (_fault is not null)
        {
            throw new InvalidOperationException("The cpio writer failed earlier and cannot continue.", _fault);
        }
        try
        {
            action();
        }
        catch (Exception e)
        {
            _fault = e;
            throw;
        }
    }

    public void Dispose()
    {
    }
}
