using System.Buffers.Binary;
using System.Formats.Tar;
using System.Text.Json;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// A three-layer OCI image that exercises every layer rule, built with real tools as root:
/// layers 1 and 2 are edits of an umoci bundle turned into layers by <c>umoci repack</c>
/// (so umoci writes the whiteouts), layer 3 is a hand-written tar added with
/// <c>umoci raw add-layer</c> for what repack never emits (an opaque directory, a hard link to
/// a file of a lower layer, a directory replaced by a symlink without a whiteout).
/// <c>skopeo</c> then writes the same image as an oci-archive, a docker-archive and an OCI
/// layout with uncompressed layers. The oracle is <c>umoci unpack</c> of the final image.
/// </summary>
public sealed class RulesImage : IAsyncLifetime
{
    public const string Tag = "rules";
    public const string Env = "VESSEL_RULES=1";
    public const string WorkingDir = "/data/work";
    public static readonly string[] Requirements = ["root", "umoci", "skopeo", "e2fsck", "losetup", "mount", "mknod", "mkfifo", "touch"];

    private const long OldTime = 981173106; // 2001-02-03T04:05:06Z
    private const long FarFutureTime = 4102444800; // 2100-01-01: needs ext4's extra epoch bits
    private static readonly string LongName = new string('n', 251) + ".txt"; // 255 bytes, the ext4 maximum
    private static readonly string DeepDirectory = string.Join('/', Enumerable.Range(1, 9).Select(i => $"level-{i:00}-abcdefghij")); // > 150 bytes

    /// <summary>
    /// What layer 1 holds for layers 2 and 3 to replace, delete or change: directories (0755),
    /// parents first, each with its files (0644).
    /// </summary>
    private static readonly (string Directory, (string Name, string Content)[] Files)[] ChangedAbove =
    [
        ("replace", [("file-becomes-dir", "I was a file\n"), ("file-becomes-symlink", "I was a file too\n")]),
        ("replace/dir-becomes-file", [("inner", "inner\n")]),
        ("replace/dir-becomes-symlink", [("child", "gone with my directory\n")]),
        ("gone", [("file-to-delete", "bye\n"), ("survivor", "still here\n")]),
        ("gone/dir-to-delete", [("a", "a\n")]),
        ("gone/dir-to-delete/b", [("c", "c\n")]),
        ("opaque", [("old1", "old 1\n")]),
        ("opaque/sub", [("old2", "old 2\n")]),
        ("meta", [("chmod-me", "mode changes in layer 2\n"), ("chown-me", "owner changes in layer 2\n")]),
    ];

    private Vessel.Common.TempDirectory? _temp;
    private TreeSnapshot? _expected;

    /// <summary>Why the image could not be built here (a missing tool), or null.</summary>
    public string? Missing { get; private set; }

    public string Root => _temp?.Path ?? throw new InvalidOperationException("not built");

    /// <summary>The OCI layout (gzip layers, as umoci writes them).</summary>
    public string Layout => Path.Combine(Root, "layout");

    public string OciArchive => Path.Combine(Root, "rules-oci.tar");

    public string DockerArchive => Path.Combine(Root, "rules-docker.tar");

    /// <summary>The same image with uncompressed layers.</summary>
    public string UncompressedLayout => Path.Combine(Root, "layout-uncompressed");

    public string OracleRootfs => Path.Combine(Root, "oracle", "rootfs");

    /// <summary>The oracle tree (umoci unpack of the final image), walked once.</summary>
    internal TreeSnapshot Expected => _expected ?? throw new InvalidOperationException("not built");

    public async Task InitializeAsync()
    {
        Missing = Vessel.Testing.Requirements.FirstMissing(Requirements);
        if (Missing is not null)
        {
            return;
        }
        _temp = Vessel.Common.TempDirectory.Create("vessel-rules-");
        try
        {
            await BuildAsync();
        }
        catch
        {
            _temp.Dispose(); // a fixture that failed to build owns nothing afterwards
            _temp = null;
            throw;
        }
    }

    private async Task BuildAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = timeout.Token;
        string bundle = Path.Combine(Root, "bundle");
        string rootfs = Path.Combine(bundle, "rootfs");

        await Tool(ct, "umoci", "init", "--layout", Layout);
        await Tool(ct, "umoci", "new", "--image", $"{Layout}:{Tag}");
        await Tool(ct, "umoci", "unpack", "--image", $"{Layout}:{Tag}", bundle);

        await WriteLayerOneAsync(rootfs, ct);
        await Tool(ct, "umoci", "repack", "--image", $"{Layout}:{Tag}", bundle);

        await WriteLayerTwoAsync(rootfs, ct);
        await Tool(ct, "umoci", "repack", "--image", $"{Layout}:{Tag}", bundle);

        string layerThree = Path.Combine(Root, "layer3.tar");
        WriteLayerThree(layerThree);
        await Tool(ct, "umoci", "raw", "add-layer", "--image", $"{Layout}:{Tag}", layerThree);

        await Tool(ct, "umoci", "config", "--image", $"{Layout}:{Tag}",
            "--config.env", Env, "--config.workingdir", WorkingDir,
            "--config.entrypoint", "/bin/tool", "--config.user", "1000:1000");

        string oracleBundle = Path.Combine(Root, "oracle");
        await Oracles.UmociUnpackAsync(Layout, Tag, oracleBundle, ct);
        _expected = TreeSnapshot.Take(OracleRootfs, cancellationToken: ct);

        await Tool(ct, "skopeo", "copy", "-q", $"oci:{Layout}:{Tag}", $"oci-archive:{OciArchive}:{Tag}");
        await Tool(ct, "skopeo", "copy", "-q", $"oci:{Layout}:{Tag}", $"docker-archive:{DockerArchive}:vessel/rules:{Tag}");
        // skopeo recompresses on the way into an OCI layout; the dir transport can hold plain tars.
        string plainDir = Path.Combine(Root, "dir-uncompressed");
        await Tool(ct, "skopeo", "copy", "-q", "--dest-decompress", $"oci:{Layout}:{Tag}", $"dir:{plainDir}");
        await Tool(ct, "skopeo", "copy", "-q", "--dest-oci-accept-uncompressed-layers", $"dir:{plainDir}", $"oci:{UncompressedLayout}:{Tag}");
        AssertLayerMediaTypes(UncompressedLayout, "application/vnd.oci.image.layer.v1.tar");
        AssertLayerMediaTypes(Layout, "application/vnd.oci.image.layer.v1.tar+gzip");
    }

    public Task DisposeAsync()
    {
        _temp?.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>The lower layer: one of everything, plus what layers 2 and 3 will replace or delete.</summary>
    private static async Task WriteLayerOneAsync(string r, CancellationToken ct)
    {
        Dir(r, "etc", 0x1ED);
        File.WriteAllText(P(r, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
        Dir(r, "bin", 0x1ED);
        WriteFile(r, "bin/tool", "#!/bin/sh\necho tool\n", 0x9ED /* 04755 */);
        // security.capability v2 (linux/capability.h): magic|effective, permitted = CAP_NET_RAW.
        byte[] cap = new byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(cap, 0x0200_0001);
        BinaryPrimitives.WriteUInt32LittleEndian(cap.AsSpan(4), 1u << 13);
        Native.SetXattr(P(r, "bin/tool"), "security.capability", cap);
        Native.SetXattr(P(r, "bin/tool"), "user.comment", "a tool with a capability"u8);
        WriteFile(r, "bin/sgid", "sgid\n", 0x5ED /* 02755 */, uid: 0, gid: 42);
        Dir(r, "tmp", 0x3FF /* 01777 */);
        Dir(r, "data", 0x1ED);
        Native.SetXattr(P(r, "data"), "user.dir-attr", "on a directory"u8);
        Native.SetXattr(P(r, "data"), "trusted.vessel", new byte[] { 0, 1, 2, 255 });
        WriteFile(r, "data/hello.txt", "hello\n", 0x1A4, uid: 1000, gid: 1000);
        WriteFile(r, "data/empty", "", 0x180);
        WriteFile(r, "data/readonly", "read only\n", 0x124);
        WriteFile(r, "data/base-file", "lower layer content, linked from layer 3\n", 0x1A4);
        using (var sparse = new FileStream(P(r, "data/sparse"), FileMode.CreateNew))
        {
            sparse.Write("head"u8);
            sparse.SetLength(16 << 20);
            sparse.Seek(-4, SeekOrigin.End);
            sparse.Write("tail"u8);
        }
        Dir(r, "data/links", 0x1ED);
        WriteFile(r, "data/links/a", "shared by three names\n", 0x1A4, uid: 7, gid: 8);
        Native.Link(P(r, "data/links/a"), P(r, "data/links/b"));
        Native.Link(P(r, "data/links/a"), P(r, "data/links/c"));
        Dir(r, "data/dev", 0x1ED);
        await Tool(ct, "mknod", "-m", "0666", P(r, "data/dev/chr"), "c", "1", "3");
        await Tool(ct, "mknod", "-m", "0660", P(r, "data/dev/blk"), "b", "7", "200");
        await Tool(ct, "mknod", "-m", "0600", P(r, "data/dev/bigdev"), "c", "4095", "1048575"); // needs the new dev_t encoding
        await Tool(ct, "mkfifo", "-m", "0640", P(r, "data/dev/fifo"));
        File.CreateSymbolicLink(P(r, "data/sym-rel"), "hello.txt");
        File.CreateSymbolicLink(P(r, "data/sym-abs"), "/etc/passwd");
        File.CreateSymbolicLink(P(r, "data/sym-dangling"), "/no/such/target");
        File.CreateSymbolicLink(P(r, "data/sym-dir"), "links");
        Native.LChown(P(r, "data/sym-dir"), 5, 6);
        File.CreateSymbolicLink(P(r, "data/sym-long"), "/" + string.Concat(Enumerable.Repeat("long-target/", 20))); // > 59 bytes: not inline
        Dir(r, "data/long", 0x1ED);
        WriteFile(r, "data/long/" + LongName, "a 255-byte name\n", 0x1A4);
        Directory.CreateDirectory(P(r, "data/" + DeepDirectory));
        WriteFile(r, "data/" + DeepDirectory + "/file-at-the-end-of-a-long-path", "deep\n", 0x1A4);
        foreach ((string directory, (string Name, string Content)[] files) in ChangedAbove)
        {
            Dir(r, directory, 0x1ED);
            foreach ((string name, string content) in files)
            {
                WriteFile(r, directory + "/" + name, content, 0x1A4);
            }
        }
        File.CreateSymbolicLink(P(r, "replace/symlink-becomes-file"), "../data/hello.txt");

        // Times last: adding children changes a directory's mtime.
        File.SetLastWriteTimeUtc(P(r, "data/hello.txt"), DateTime.UnixEpoch.AddSeconds(OldTime));
        File.SetLastWriteTimeUtc(P(r, "data/readonly"), DateTime.UnixEpoch.AddSeconds(FarFutureTime));
        await Tool(ct, "touch", "-h", "-d", $"@{OldTime}", P(r, "data/sym-rel"));
        Directory.SetLastWriteTimeUtc(P(r, "data/long"), DateTime.UnixEpoch.AddSeconds(OldTime));
    }

    /// <summary>The middle layer: deletions (umoci writes whiteouts), type changes, content and metadata changes.</summary>
    private static async Task WriteLayerTwoAsync(string r, CancellationToken ct)
    {
        File.Delete(P(r, "gone/file-to-delete"));
        Directory.Delete(P(r, "gone/dir-to-delete"), recursive: true);
        File.Delete(P(r, "data/links/c")); // one name of a hard-link group: the others keep the inode

        File.Delete(P(r, "replace/file-becomes-dir"));
        Dir(r, "replace/file-becomes-dir", 0x1C0);
        WriteFile(r, "replace/file-becomes-dir/child", "now a directory\n", 0x1A4);
        Directory.Delete(P(r, "replace/dir-becomes-file"), recursive: true);
        WriteFile(r, "replace/dir-becomes-file", "now a file\n", 0x1ED);
        File.Delete(P(r, "replace/symlink-becomes-file"));
        WriteFile(r, "replace/symlink-becomes-file", "now a regular file\n", 0x1A4);
        File.Delete(P(r, "replace/file-becomes-symlink"));
        File.CreateSymbolicLink(P(r, "replace/file-becomes-symlink"), "../data/base-file");

        File.WriteAllText(P(r, "data/hello.txt"), "hello, second version\n");
        Native.SetXattr(P(r, "data/hello.txt"), "user.version", "2"u8);
        Native.Chmod(P(r, "meta/chmod-me"), 0x1E8 /* 0750 */);
        Native.Chmod(P(r, "tmp"), 0x3FF);
        Chown(P(r, "meta/chown-me"), 123, 456);
        Dir(r, "data/l2", 0x1ED);
        WriteFile(r, "data/l2/x", "linked within layer 2\n", 0x1A4);
        Native.Link(P(r, "data/l2/x"), P(r, "data/l2/y"));
    }

    /// <summary>The top layer, written by hand: opaque directory, explicit whiteout, cross-layer hard link.</summary>
    private static void WriteLayerThree(string path)
    {
        using FileStream file = File.Create(path);
        using var tar = new TarWriter(file, TarEntryFormat.Pax, leaveOpen: false);
        DateTimeOffset time = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);
        void Add(TarEntryType type, string name, string? content = null, string? link = null, int mode = 0x1A4)
        {
            var entry = new PaxTarEntry(type, name)
            {
                Mode = (UnixFileMode)mode,
                ModificationTime = time,
                Uid = 0,
                Gid = 0,
            };
            if (link is not null)
            {
                entry.LinkName = link;
            }
            if (content is not null)
            {
                entry.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content));
            }
            tar.WriteEntry(entry);
        }

        Add(TarEntryType.Directory, "opaque/", mode: 0x1E8);
        Add(TarEntryType.RegularFile, "opaque/.wh..wh..opq", "");
        Add(TarEntryType.RegularFile, "opaque/new1", "only this survives in opaque/\n");
        Add(TarEntryType.Directory, "opaque/newdir/", mode: 0x1ED);
        Add(TarEntryType.RegularFile, "opaque/newdir/f", "new\n");
        Add(TarEntryType.HardLink, "data/cross-link", link: "data/base-file");
        Add(TarEntryType.Directory, "data/l3/", mode: 0x1ED);
        Add(TarEntryType.RegularFile, "data/l3/one", "two names, one inode\n");
        Add(TarEntryType.HardLink, "data/l3/two", link: "data/l3/one");
        Add(TarEntryType.RegularFile, "data/.wh.empty", "");
        Add(TarEntryType.SymbolicLink, "replace/dir-becomes-symlink", link: "/etc");
        Add(TarEntryType.RegularFile, "gone/.wh.survivor-that-never-was", "");
    }

    private static void AssertLayerMediaTypes(string layout, string expected)
    {
        using JsonDocument index = JsonDocument.Parse(File.ReadAllText(Path.Combine(layout, "index.json")));
        string manifestDigest = index.RootElement.GetProperty("manifests")[0].GetProperty("digest").GetString()!;
        using JsonDocument manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(layout, "blobs", "sha256", manifestDigest["sha256:".Length..])));
        foreach (JsonElement layer in manifest.RootElement.GetProperty("layers").EnumerateArray())
        {
            Assert.Equal(expected, layer.GetProperty("mediaType").GetString());
        }
    }

    private static string P(string root, string relative) => Path.Combine(root, relative);

    private static void Dir(string root, string relative, int mode)
    {
        Directory.CreateDirectory(P(root, relative));
        Native.Chmod(P(root, relative), mode);
    }

    private static void WriteFile(string root, string relative, string content, int mode, int uid = 0, int gid = 0)
    {
        string path = P(root, relative);
        File.WriteAllText(path, content);
        Native.Chmod(path, mode);
        if (uid != 0 || gid != 0)
        {
            Chown(path, uid, gid);
        }
    }

    private static void Chown(string path, int uid, int gid)
    {
        // chown clears setuid/setgid: put the mode back after.
        int mode = Native.GetPermissions(path);
        Native.LChown(path, uid, gid);
        Native.Chmod(path, mode);
    }

    private static Task Tool(CancellationToken ct, string tool, params string[] args) => Oracles.RunToolAsync(tool, args, ct);
}
