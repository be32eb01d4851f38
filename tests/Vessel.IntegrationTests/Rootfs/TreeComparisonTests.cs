namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// The read-back checker must be able to fail: each case changes one property of one entry
/// in a copy of a tree and expects the comparison to name that entry and property.
/// </summary>
public sealed class TreeComparisonTests
{
    public static TheoryData<string, string> Mutations => new()
    {
        { "content", "/f: content" },
        { "mode", "/f: mode" },
        { "owner", "/f: uid" },
        { "mtime", "/f: mtime" },
        { "xattr", "/f: xattr user.k" },
        { "symlink", "/s: symlink target" },
        { "hardlink", "/h1: hard links" },
        { "type", "/d: type" },
        { "missing", "/gone: missing" },
        { "extra", "/extra: unexpected" },
        { "provisioning-as-dir", "/etc: created for the provisioning files" },
    };

    [RequiresFact("root")]
    public void Identical_trees_compare_equal_ignoring_provisioning_files_and_lost_found()
    {
        using TempDirectory temp = TempDirectory.Create("vessel-cmp-");
        string a = MakeTree(temp.Combine("a"));
        string b = MakeTree(temp.Combine("b"));
        Directory.CreateDirectory(Path.Combine(b, "lost+found"));
        Directory.CreateDirectory(Path.Combine(b, "etc"));
        File.WriteAllText(Path.Combine(b, "etc", "hosts"), "127.0.0.1 localhost\n");
        Directory.CreateDirectory(Path.Combine(b, ".vessel"));
        File.WriteAllText(Path.Combine(b, ".vessel", "image.json"), "{}");

        Assert.Empty(RootfsChecker.CompareIgnoringProvisioning(TreeSnapshot.Take(a), TreeSnapshot.Take(b)));
    }

    [RequiresTheory("root")]
    [MemberData(nameof(Mutations))]
    public void A_single_changed_property_is_reported(string mutation, string expected)
    {
        using TempDirectory temp = TempDirectory.Create("vessel-cmp-");
        string a = MakeTree(temp.Combine("a"));
        string b = MakeTree(temp.Combine("b"));
        string f = Path.Combine(b, "f");
        switch (mutation)
        {
            case "content":
                File.WriteAllText(f, "other");
                Native.SetTimes(f, 1_000_000);
                break;
            case "mode":
                Native.Chmod(f, 0x9A4); // 04644
                break;
            case "owner":
                Native.LChown(f, 1, 0);
                break;
            case "mtime":
                Native.SetTimes(f, 1_000_001);
                break;
            case "xattr":
                Native.SetXattr(f, "user.k", "w"u8);
                break;
            case "symlink":
                File.Delete(Path.Combine(b, "s"));
                File.CreateSymbolicLink(Path.Combine(b, "s"), "g");
                Native.SetTimes(Path.Combine(b, "s"), 1_000_000);
                break;
            case "hardlink":
                File.Delete(Path.Combine(b, "h2"));
                File.Copy(Path.Combine(b, "h1"), Path.Combine(b, "h2"));
                Native.SetTimes(Path.Combine(b, "h2"), 1_000_000);
                break;
            case "type":
                Directory.Delete(Path.Combine(b, "d"));
                File.WriteAllText(Path.Combine(b, "d"), string.Empty);
                break;
            case "missing":
                File.Delete(Path.Combine(b, "gone"));
                break;
            case "extra":
                File.WriteAllText(Path.Combine(b, "extra"), string.Empty);
                break;
            case "provisioning-as-dir":
                File.WriteAllText(Path.Combine(b, "etc"), string.Empty);
                break;
        }

        List<string> differences = RootfsChecker.CompareIgnoringProvisioning(TreeSnapshot.Take(a), TreeSnapshot.Take(b));

        Assert.Contains(differences, d => d.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Content_digest_ignores_how_zeros_are_stored_but_not_where_data_is()
    {
        using TempDirectory temp = TempDirectory.Create("vessel-digest-");
        byte[] dense = new byte[3 * ContentDigest.BlockSize + 100];
        dense[5] = 1;
        dense[^1] = 2;
        File.WriteAllBytes(temp.Combine("dense"), dense);
        using (var sparse = new FileStream(temp.Combine("sparse"), FileMode.CreateNew))
        {
            sparse.Position = 5;
            sparse.WriteByte(1);
            sparse.SetLength(dense.Length);
            sparse.Position = dense.Length - 1;
            sparse.WriteByte(2);
        }
        byte[] moved = (byte[])dense.Clone();
        (moved[5], moved[6]) = (0, 1);

        Assert.Equal(ContentDigest.Of(dense), ContentDigest.OfFile(temp.Combine("dense")));
        Assert.Equal(ContentDigest.Of(dense), ContentDigest.OfFile(temp.Combine("sparse")));
        Assert.NotEqual(ContentDigest.Of(dense), ContentDigest.Of(moved));
        Assert.NotEqual(ContentDigest.Of(dense), ContentDigest.Of(dense.AsSpan(0, dense.Length - 1)));
        Assert.NotEqual(ContentDigest.Of(new byte[10]), ContentDigest.Of(new byte[11]));
    }

    /// <summary>A small tree with one of each property the checker compares; fixed times so two copies match.</summary>
    private static string MakeTree(string root)
    {
        Directory.CreateDirectory(root);
        string f = Path.Combine(root, "f");
        File.WriteAllText(f, "content");
        Native.Chmod(f, 0x1A4);
        Native.SetXattr(f, "user.k", "v"u8);
        File.CreateSymbolicLink(Path.Combine(root, "s"), "f");
        File.WriteAllText(Path.Combine(root, "h1"), "linked");
        Native.Link(Path.Combine(root, "h1"), Path.Combine(root, "h2"));
        File.WriteAllText(Path.Combine(root, "gone"), string.Empty);
        Directory.CreateDirectory(Path.Combine(root, "d"));
        foreach (string path in Directory.EnumerateFileSystemEntries(root))
        {
            Native.SetTimes(path, 1_000_000);
        }
        return root;
    }
}
