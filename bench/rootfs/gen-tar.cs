#:property PublishAot=false
// Writes the benchmark's generated rootfs tarball: many small files plus a few large ones,
// random (incompressible) content from a fixed seed, so every run and every peer sees the
// same bytes. Run: dotnet run --file bench/rootfs/gen-tar.cs -- OUT.tar SMALL_FILES LARGE_FILES LARGE_MIB
using System.Formats.Tar;

if (args.Length != 4)
{
    Console.Error.WriteLine("usage: gen-tar.cs OUT.tar SMALL_FILES LARGE_FILES LARGE_MIB");
    return 2;
}
string output = args[0];
int smallFiles = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
int largeFiles = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture);
int largeMiB = int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
const int FilesPerDirectory = 1000;
var random = new Random(20261122);
var time = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);
byte[] pool = new byte[16 << 20];
random.NextBytes(pool);
long written = 0;

using (var file = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
using (var tar = new TarWriter(file, TarEntryFormat.Pax, leaveOpen: false))
{
    void Dir(string name) => tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, name) { Mode = (UnixFileMode)0x1ED, ModificationTime = time });
    void File(string name, int mode, ReadOnlyMemory<byte> content)
    {
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            Mode = (UnixFileMode)mode,
            ModificationTime = time,
            DataStream = new ReadOnlyMemoryStream(content),
        });
        written += content.Length;
    }

    Dir("./");
    Dir("small/");
    for (int i = 0; i < smallFiles; i++)
    {
        if (i % FilesPerDirectory == 0)
        {
            Dir($"small/d{i / FilesPerDirectory:d4}/");
        }
        // Sizes 0..8 KiB, mean ~4 KiB: the shape of a distribution's /usr.
        int size = random.Next(0, 8193);
        int offset = random.Next(0, pool.Length - size);
        File($"small/d{i / FilesPerDirectory:d4}/f{i:d7}", i % 5 == 0 ? 0x1ED : 0x1A4, pool.AsMemory(offset, size));
    }
    Dir("large/");
    for (int i = 0; i < largeFiles; i++)
    {
        byte[] content = new byte[largeMiB << 20];
        random.NextBytes(content);
        File($"large/blob{i}", 0x1A4, content);
    }
}
Console.Error.WriteLine($"gen-tar: {smallFiles} small + {largeFiles} x {largeMiB} MiB files, {written / (1 << 20)} MiB of content in {output}");
return 0;

/// <summary>A read-only stream over memory (no copy of the pool per file).</summary>
internal sealed class ReadOnlyMemoryStream(ReadOnlyMemory<byte> memory) : Stream
{
    private int _position;

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => false;

    public override long Length => memory.Length;

    public override long Position
    {
        get => _position;
        set => _position = (int)value;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = Math.Min(buffer.Length, memory.Length - _position);
        memory.Span.Slice(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
    {
        SeekOrigin.Begin => offset,
        SeekOrigin.Current => _position + offset,
        _ => memory.Length + offset,
    };

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
