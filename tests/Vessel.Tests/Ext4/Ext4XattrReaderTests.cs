using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;
using Vessel.Common;
using Vessel.Ext4;
using Vessel.Rootfs;
using Vessel.Testing;
using Xunit;

namespace Vessel.Tests.Ext4;

public sealed partial class Ext4XattrReaderTests
{
    private static async Task<string> BuildAsync(TempDirectory dir)
    {
        string image = dir.Combine("xattrs.ext4");
        await RootfsBuilder.BuildAsync(new LayersImageSource("xattrs", XattrLayer.Tar()), image, new RootfsBuildOptions { Provision = false, FreeBytes = 8 << 20 }, null, CancellationToken.None);
        return image;
    }

    /// <summary>The inode of <paramref name="path"/> in <paramref name="image"/>, as debugfs says.</summary>
    private static async Task<uint> InodeOfAsync(string image, string path)
    {
        Match m = InodeLine().Match(await E2fs.DebugfsAsync(image, $"stat /{path}"));
        Assert.True(m.Success, $"debugfs has no inode for /{path}");
        return uint.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [RequiresFact("e2fsck", "debugfs", Timeout = 60_000)]
    public async Task Every_attribute_of_every_inode_reads_back_as_the_layer_gave_it_acls_in_xattr_form()
    {
        using var dir = TempDirectory.Create("vessel-xattr-reader-");
        string image = await BuildAsync(dir);
        string? fsck = await E2fs.CheckAsync(image);
        Assert.True(fsck is null, fsck);
        using Ext4XattrReader reader = Ext4XattrReader.Open(image);
        foreach ((string path, IReadOnlyDictionary<string, byte[]> expected) in XattrLayer.Expected)
        {
            uint inode = await InodeOfAsync(image, path);
            var actual = reader.Read(inode).ToDictionary(a => a.Key, a => a.Value);
            Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
            foreach ((string name, byte[] value) in expected)
            {
                Assert.True(value.AsSpan().SequenceEqual(actual[name]), $"{path} {name}: {Convert.ToHexString(actual[name])}, expected {Convert.ToHexString(value)}");
            }
            // e2fsprogs, the oracle, lists the same names.
            string listed = await E2fs.DebugfsAsync(image, $"ea_list /{path}");
            Assert.All(expected.Keys, name => Assert.Contains(name + " (", listed, StringComparison.Ordinal));
        }
        Assert.Empty(reader.Read(await InodeOfAsync(image, "xattr")));
    }

    [Fact]
    public async Task The_layer_is_the_same_bytes_on_every_call_so_its_image_has_one_digest()
    {
        byte[] first = XattrLayer.Tar();
        await Task.Delay(1100);
        Assert.Equal(Convert.ToHexString(first), Convert.ToHexString(XattrLayer.Tar()));
    }

    [RequiresFact("e2fsck", "debugfs", Timeout = 60_000)]
    public async Task A_damaged_attribute_block_or_an_inode_out_of_range_is_refused_naming_the_inode()
    {
        using var dir = TempDirectory.Create("vessel-xattr-reader-");
        string image = await BuildAsync(dir);
        uint inode = await InodeOfAsync(image, XattrLayer.LargeFile);
        Match block = FileAclLine().Match(await E2fs.DebugfsAsync(image, $"stat /{XattrLayer.LargeFile}"));
        Assert.True(block.Success, "the large file has no attribute block");
        long at = long.Parse(block.Groups[1].Value, CultureInfo.InvariantCulture) * Ext4Writer.BlockSize;
        await using (FileStream f = File.OpenWrite(image))
        {
            byte[] entry = new byte[4];
            f.Position = at + 32 + 2; // the first entry's e_value_offs
            BinaryPrimitives.WriteUInt16LittleEndian(entry, 0xFFF0);
            f.Write(entry, 0, 2);
        }
        using Ext4XattrReader reader = Ext4XattrReader.Open(image);
        InvalidDataException e = Assert.Throws<InvalidDataException>(() => reader.Read(inode));
        Assert.Contains($"inode {inode}", e.Message, StringComparison.Ordinal);
        Assert.Contains("past its end", e.Message, StringComparison.Ordinal);
        InvalidDataException range = Assert.Throws<InvalidDataException>(() => reader.Read(uint.MaxValue));
        Assert.Contains("outside", range.Message, StringComparison.Ordinal);
        string notExt4 = dir.Combine("zeros");
        await File.WriteAllBytesAsync(notExt4, new byte[8192]);
        Assert.Contains("superblock", Assert.Throws<InvalidDataException>(() => Ext4XattrReader.Open(notExt4)).Message, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"Inode: (\d+)")]
    private static partial Regex InodeLine();

    [GeneratedRegex(@"File ACL: (\d+)")]
    private static partial Regex FileAclLine();
}
