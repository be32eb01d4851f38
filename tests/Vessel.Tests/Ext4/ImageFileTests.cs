using Vessel.Ext4;

namespace Vessel.Tests.Ext4;

public sealed class ImageFileTests
{
    public static TheoryData<string?> Parents()
    {
        // The default temp directory (O_DIRECT where the filesystem has it) and tmpfs, which may refuse it.
        var data = new TheoryData<string?> { (string?)null };
        if (Directory.Exists("/dev/shm"))
        {
            data.Add("/dev/shm");
        }
        return data;
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(Parents))]
    public async Task Writes_land_where_they_were_aimed_coalesced_or_not(string? parent)
    {
        await Task.Yield();
        using TempDirectory temp = TempDirectory.Create("imagefile-", parent);
        string path = temp.Combine("img");
        var expected = new byte[24 << 20];
        var random = new Random(7);
        using (var image = new ImageFile(path))
        {
            // Contiguous block-sized writes spanning several chunks, a backwards jump, a write
            // that is not block-aligned (it cannot go through O_DIRECT), and a hole punched late.
            long offset = 4096;
            while (offset < (20 << 20))
            {
                int length = 4096 * random.Next(1, 64);
                length = (int)Math.Min(length, (20 << 20) - offset);
                random.NextBytes(expected.AsSpan((int)offset, length));
                image.Write(offset, expected.AsSpan((int)offset, length));
                offset += length;
            }
            random.NextBytes(expected.AsSpan(0, 4096));
            image.Write(0, expected.AsSpan(0, 4096));
            random.NextBytes(expected.AsSpan((21 << 20) + 3, 1000));
            image.Write((21 << 20) + 3, expected.AsSpan((21 << 20) + 3, 1000));
            image.Zero(8192, 8192);
            expected.AsSpan(8192, 8192).Clear();
            image.SetLength(expected.Length);
            image.FlushToDisk();
            Assert.Equal((21 << 20) + 1003, image.HighWater);
        }
        Assert.Equal(expected, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public void Refuses_an_existing_file()
    {
        using TempDirectory temp = TempDirectory.Create("imagefile-");
        string path = temp.Combine("img");
        File.WriteAllBytes(path, [1]);
        Assert.Throws<IOException>(() => new ImageFile(path));
        Assert.Equal([1], File.ReadAllBytes(path));
    }
}
