using Vessel.Tar;
using SysTar = System.Formats.Tar;

namespace Vessel.Tests.Tar;

public sealed class TarReaderTests
{
    private static byte[] Make(SysTar.TarEntryFormat format, Action<SysTar.TarWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = new SysTar.TarWriter(ms, format, leaveOpen: true))
        {
            write(w);
        }
        return ms.ToArray();
    }

    private static async Task<List<(TarEntry Entry, byte[] Data)>> ReadAllAsync(byte[] archive)
    {
        var result = new List<(TarEntry, byte[])>();
        using var reader = new TarReader(new MemoryStream(archive), "test");
        TarEntry? e;
        while ((e = await reader.NextAsync(CancellationToken.None)) is not null)
        {
            byte[] data = new byte[e.DataLength];
            await reader.ReadDataFullAsync(data, CancellationToken.None);
            result.Add((e, data));
        }
        await reader.DrainAsync(CancellationToken.None);
        return result;
    }

    [Theory]
    [InlineData(SysTar.TarEntryFormat.Ustar)]
    [InlineData(SysTar.TarEntryFormat.Pax)]
    [InlineData(SysTar.TarEntryFormat.Gnu)]
    public async Task Reads_files_dirs_links_and_long_names(SysTar.TarEntryFormat format)
    {
        string longName = string.Join('/', Enumerable.Repeat("directory-name", 8)) + "/file";
        byte[] archive = Make(format, w =>
        {
            w.WriteEntry(new SysTar.UstarTarEntry(SysTar.TarEntryType.Directory, "d/") { Mode = (UnixFileMode)0x1ED });
            var f = new SysTar.UstarTarEntry(SysTar.TarEntryType.RegularFile, "d/f") { DataStream = new MemoryStream("hello"u8.ToArray()), Uid = 1000, Gid = 100 };
            w.WriteEntry(f);
            w.WriteEntry(new SysTar.UstarTarEntry(SysTar.TarEntryType.SymbolicLink, "d/l") { LinkName = "f" });
            if (format != SysTar.TarEntryFormat.Ustar)
            {
                w.WriteEntry(new SysTar.PaxTarEntry(SysTar.TarEntryType.RegularFile, longName) { DataStream = new MemoryStream([1, 2, 3]) });
            }
        });
        var entries = await ReadAllAsync(archive);
        Assert.Equal("d/", entries[0].Entry.Name);
        Assert.Equal(TarEntryType.Directory, entries[0].Entry.Type);
        Assert.Equal("hello", Encoding.ASCII.GetString(entries[1].Data));
        Assert.Equal(1000, entries[1].Entry.Uid);
        Assert.Equal("f", entries[2].Entry.LinkName);
        if (format != SysTar.TarEntryFormat.Ustar)
        {
            Assert.Equal(longName, entries[3].Entry.Name);
            Assert.Equal(new byte[] { 1, 2, 3 }, entries[3].Data);
        }
    }

    [Theory]
    [InlineData(97)] // headers and data straddle every chunk border
    [InlineData(512)]
    [InlineData(1 << 20)]
    public async Task Reads_in_place_from_a_read_ahead_stream_as_from_a_copy(int chunkSize)
    {
        var random = new Random(7);
        var files = new List<(string Name, byte[] Data)>();
        byte[] archive = Make(SysTar.TarEntryFormat.Pax, w =>
        {
            for (int i = 0; i < 40; i++)
            {
                byte[] data = new byte[random.Next(0, 9000)];
                random.NextBytes(data);
                string name = $"dir{i % 3}/" + new string('n', 1 + (i * 7 % 150)) + i;
                files.Add((name, data));
                w.WriteEntry(new SysTar.PaxTarEntry(SysTar.TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) });
            }
        });

        await using var stream = new Vessel.Common.ReadAheadStream(new MemoryStream(archive), chunkSize, chunks: 2);
        using var reader = new TarReader(stream, "test");
        int index = 0;
        TarEntry? e;
        while ((e = await reader.NextAsync(CancellationToken.None)) is not null)
        {
            using var data = new MemoryStream();
            ReadOnlyMemory<byte> chunk;
            while (!(chunk = await reader.ReadDataChunkAsync(CancellationToken.None)).IsEmpty)
            {
                data.Write(chunk.Span);
            }
            Assert.Equal(files[index].Name, e.Name);
            Assert.Equal(files[index].Data, data.ToArray());
            index++;
        }
        await reader.DrainAsync(CancellationToken.None);
        Assert.Equal(files.Count, index);
        Assert.Equal(archive.Length, reader.Position);
    }

    [Fact]
    public async Task Keeps_binary_xattr_values_byte_for_byte()
    {
        byte[] capability = [0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
        // A pax record written by hand: System.Formats.Tar cannot write non-UTF-8 values.
        byte[] record = [.. Encoding.ASCII.GetBytes("SCHILY.xattr.security.capability="), .. capability, (byte)'\n'];
        int len = record.Length + 3;
        len = record.Length + len.ToString(System.Globalization.CultureInfo.InvariantCulture).Length + 1;
        byte[] pax = [.. Encoding.ASCII.GetBytes($"{len} "), .. record];
        byte[] archive = [.. Header("PaxHeader/f", 'x', pax.Length), .. Pad(pax), .. Header("f", '0', 0), .. new byte[1024]];
        var entries = await ReadAllAsync(archive);
        var x = Assert.Single(entries[0].Entry.Xattrs);
        Assert.Equal("security.capability", x.Key);
        Assert.Equal(capability, x.Value);
    }

    private static byte[] PaxRecords(params string[] records)
    {
        var all = new List<byte>();
        foreach (string r in records)
        {
            // A record's length counts its own digits: "LEN key=value\n".
            int body = Encoding.UTF8.GetByteCount(r) + 2;
            int len = body + Digits(body);
            len = body + Digits(len);
            all.AddRange(Encoding.UTF8.GetBytes($"{len} {r}\n"));
        }
        return [.. all];
    }

    private static int Digits(int n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;

    [Fact]
    public async Task Applies_global_pax_records_then_every_local_header_in_order()
    {
        byte[] global = PaxRecords("uid=7", "SCHILY.xattr.user.a=g", "mtime=1700000000.5");
        byte[] local1 = PaxRecords("uid=9");
        byte[] local2 = PaxRecords("SCHILY.xattr.user.a=l", "path=renamed/file");
        byte[] local3 = PaxRecords("mtime=-1.25");
        byte[] archive =
        [
            .. Header("GlobalHead", 'g', global.Length), .. Pad(global),
            .. Header("PaxHeader/f1", 'x', local1.Length), .. Pad(local1),
            .. Header("PaxHeader/f1", 'x', local2.Length), .. Pad(local2),
            .. Header("f1", '0', 0),
            .. Header("f2", '0', 0),
            .. Header("PaxHeader/f3", 'x', local3.Length), .. Pad(local3),
            .. Header("f3", '0', 0),
            .. new byte[1024],
        ];
        var entries = await ReadAllAsync(archive);
        Assert.Equal(3, entries.Count);
        TarEntry first = entries[0].Entry;
        Assert.Equal("renamed/file", first.Name);
        Assert.Equal(9, first.Uid);
        var x = Assert.Single(first.Xattrs); // the local value replaces the global one
        Assert.Equal(("user.a", "l"), (x.Key, Encoding.ASCII.GetString(x.Value)));
        Assert.Equal(new TarTime(1700000000, 500000000), first.ModificationTime);
        TarEntry second = entries[1].Entry;
        Assert.Equal("f2", second.Name);
        Assert.Equal(7, second.Uid);
        Assert.Equal("g", Encoding.ASCII.GetString(Assert.Single(second.Xattrs).Value));
        Assert.Equal(new TarTime(-2, 750000000), entries[2].Entry.ModificationTime);
        Assert.Equal(7, entries[2].Entry.Uid);
    }

    [Theory]
    [InlineData("mtime=12x")]
    [InlineData("uid=-")]
    [InlineData("mtime=1.5e3")]
    public async Task Rejects_pax_numbers_that_are_not_numbers(string record)
    {
        byte[] pax = PaxRecords(record);
        byte[] archive = [.. Header("PaxHeader/f", 'x', pax.Length), .. Pad(pax), .. Header("f", '0', 0), .. new byte[1024]];
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync(archive));
        Assert.Contains("pax record", e.Message);
    }

    [Fact]
    public async Task Rejects_a_corrupt_header_checksum()
    {
        byte[] archive = Make(SysTar.TarEntryFormat.Ustar, w => w.WriteEntry(new SysTar.UstarTarEntry(SysTar.TarEntryType.RegularFile, "f") { DataStream = new MemoryStream([1]) }));
        archive[10] ^= 0x55;
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync(archive));
        Assert.Contains("checksum", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rejects_truncated_data()
    {
        byte[] archive = Make(SysTar.TarEntryFormat.Ustar, w => w.WriteEntry(new SysTar.UstarTarEntry(SysTar.TarEntryType.RegularFile, "f") { DataStream = new MemoryStream(new byte[5000]) }));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync(archive[..2048]));
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rejects_an_absurd_size()
    {
        byte[] header = Header("f", '0', 0);
        // base-256 size of 2^60 bytes
        header[124] = 0x80;
        Array.Clear(header, 125, 11);
        header[128] = 0x10;
        FixChecksum(header);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync([.. header, .. new byte[1024]]));
        Assert.Contains("size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rejects_garbage_after_the_end_marker()
    {
        byte[] archive = Make(SysTar.TarEntryFormat.Ustar, w => w.WriteEntry(new SysTar.UstarTarEntry(SysTar.TarEntryType.Directory, "d/")));
        byte[] withGarbage = [.. archive, .. "trailing"u8.ToArray()];
        await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync(withGarbage));
    }

    [Fact]
    public async Task Reads_pax_sparse_1_0_maps()
    {
        // GNU tar --sparse --format=pax (1.0): map lines at the start of the data.
        byte[] map = Encoding.ASCII.GetBytes("2\n0\n4\n8192\n3\n");
        byte[] data = [.. Pad(map), 1, 2, 3, 4, 5, 6, 7];
        string records = Pax("GNU.sparse.major", "1") + Pax("GNU.sparse.minor", "0") + Pax("GNU.sparse.name", "sparse") + Pax("GNU.sparse.realsize", "8195");
        byte[] pax = Encoding.ASCII.GetBytes(records);
        byte[] archive = [.. Header("PaxHeader/s", 'x', pax.Length), .. Pad(pax), .. Header("GNUSparseFile.0/sparse", '0', data.Length), .. Pad(data), .. new byte[1024]];
        using var reader = new TarReader(new MemoryStream(archive), "test");
        TarEntry e = (await reader.NextAsync(CancellationToken.None))!;
        Assert.Equal("sparse", e.Name);
        Assert.Equal(8195, e.Size);
        Assert.Equal(new (long, long)[] { (0, 4), (8192, 3) }, e.SparseMap!.ToArray());
        byte[] stored = new byte[7];
        Assert.Equal(7, await reader.ReadDataFullAsync(stored, CancellationToken.None));
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7 }, stored);
    }

    private static string Pax(string key, string value)
    {
        string body = $" {key}={value}\n";
        int len = body.Length + 1;
        while ((len.ToString(System.Globalization.CultureInfo.InvariantCulture) + body).Length != len)
        {
            len++;
        }
        return len.ToString(System.Globalization.CultureInfo.InvariantCulture) + body;
    }

    private static byte[] Pad(byte[] data) => [.. data, .. new byte[(512 - (data.Length % 512)) % 512]];

    private static byte[] Header(string name, char type, long size)
    {
        byte[] h = new byte[512];
        Encoding.ASCII.GetBytes(name).CopyTo(h, 0);
        Encoding.ASCII.GetBytes("0000644\0").CopyTo(h, 100);
        Encoding.ASCII.GetBytes("0000000\0").CopyTo(h, 108);
        Encoding.ASCII.GetBytes("0000000\0").CopyTo(h, 116);
        Encoding.ASCII.GetBytes(Convert.ToString(size, 8).PadLeft(11, '0') + "\0").CopyTo(h, 124);
        Encoding.ASCII.GetBytes("00000000000\0").CopyTo(h, 136);
        h[156] = (byte)type;
        Encoding.ASCII.GetBytes("ustar\0" + "00").CopyTo(h, 257);
        FixChecksum(h);
        return h;
    }

    private static void FixChecksum(byte[] h)
    {
        for (int i = 148; i < 156; i++)
        {
            h[i] = (byte)' ';
        }
        int sum = h.Sum(b => b);
        Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ").CopyTo(h, 148);
    }
}
