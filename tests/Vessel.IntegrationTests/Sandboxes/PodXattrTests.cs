using Vessel.Ext4;
using Vessel.IntegrationTests.Rootfs;

namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>
/// Extended attributes of a pod's image (issue 15): the Debian minbase with
/// <see cref="XattrLayer"/> on top (a file capability, user., trusted. and ACL attributes),
/// unpacked into a virtio-fs tree and seen from inside containers on both lowers.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class PodXattrTests : PodTestBase
{
    private const string Reference = "debian-with-xattrs";

    /// <summary>
    /// Lists each path's attributes inside the guest as "PATH NAME HEX" lines with Perl's
    /// syscall (llistxattr 195, lgetxattr 192 on x86-64): perl-base is in a minbase, getfattr is not.
    /// </summary>
    private const string ListXattrs = """
        for my $f (@ARGV) {
          my $l = "\0" x 65536; my $n = syscall(195, $f, $l, 65536);
          if ($n < 0) { print "$f ! $!\n"; next }
          for my $x (grep { length } split /\0/, substr($l, 0, $n)) {
            my $v = "\0" x 65536; my $m = syscall(192, $f, $x, $v, 65536);
            print "$f $x ", ($m < 0 ? "! $!" : unpack("H*", substr($v, 0, $m))), "\n";
          }
        }
        """;

    public PodXattrTests(SandboxEnvironment environment)
        : base(environment)
    {
    }

    private static async Task<IImageSource> OpenXattrImageAsync(string reference, CancellationToken cancellationToken)
        => reference == Reference
            ? new LayersImageSource(Reference, await File.ReadAllBytesAsync(TestImages.DebianTarball, cancellationToken), XattrLayer.Tar())
            : await OpenImageAsync(reference, cancellationToken);

    [RequiresFact("qemu-system-x86_64", "busybox-image", "debian-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "debugfs", "losetup", "mount", "root", Timeout = 600_000)]
    public async Task A_tree_unpacked_from_a_lower_matches_the_lower_mounted_by_the_kernel_xattrs_included()
    {
        _ = TestImages.DebianTarball; // built (minutes) and cached on first use, before the deadline starts
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        CancellationToken ct = cts.Token;
        await using IImageSource source = await OpenXattrImageAsync(Reference, ct);
        PodLower lower = await PodLower.EnsureAsync(PodLower.Cache(Home.Images), source, ct);
        PodTree tree = await PodTree.EnsureAsync(Home, lower, ct);

        foreach ((string path, IReadOnlyDictionary<string, byte[]> expected) in XattrLayer.Expected)
        {
            SortedDictionary<string, byte[]> actual = Native.ListXattrs(Path.Combine(tree.Path, path));
            Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys);
            Assert.All(expected, a => Assert.Equal(Convert.ToHexString(a.Value), Convert.ToHexString(actual[a.Key])));
        }

        // The kernel's ext4 is the oracle for everything else too: owners, modes, hard links, devices, symlinks.
        LoopMount mount = await LoopMount.MountAsync(lower.Path, Fixture.Work!.Path, readOnly: true, ct);
        List<string> differences;
        try
        {
            TreeSnapshot oracle = TreeSnapshot.Take(mount.MountPoint, cancellationToken: ct);
            TreeSnapshot unpacked = TreeSnapshot.Take(tree.Path, cancellationToken: ct);
            // Not on the host, by design (docs/ARCHITECTURE.md, "Pods"): device nodes, fifos and sockets (an image's
            // 0666 block device would open a host disk), and symlinks' own mtimes (rdump sets none).
            HashSet<string> special = oracle.Entries.Values.Where(e => e.Type is FsKind.CharacterDevice or FsKind.BlockDevice or FsKind.Fifo or FsKind.Socket)
                .Select(e => e.Path).ToHashSet(StringComparer.Ordinal);
            Assert.NotEmpty(special);
            Assert.All(special, p => Assert.False(unpacked.Entries.ContainsKey(p), p + " was created on the host"));
            var comparison = new TreeComparison();
            comparison.IgnoreMtime.Add("/");
            comparison.IgnoreMtime.UnionWith(oracle.Entries.Values.Where(e => e.Type == FsKind.Symlink).Select(e => e.Path));
            differences = comparison.Compare(oracle.Without(special.Contains), unpacked);
        }
        finally
        {
            await mount.DisposeAsync();
        }
        await mount.AssertReleasedAsync();
        Assert.True(differences.Count == 0, string.Join('\n', differences.Take(40)));
        Fixture.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "debian-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "debugfs", "root", Timeout = 900_000)]
    public async Task Containers_see_the_images_file_capabilities_user_attributes_and_acls_on_both_lowers()
    {
        _ = TestImages.DebianTarball;
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        CancellationToken ct = cts.Token;
        var seen = new Dictionary<PodRootfsMode, Dictionary<string, Dictionary<string, string>>>();
        foreach (PodRootfsMode mode in new[] { PodRootfsMode.Block, PodRootfsMode.Virtiofs })
        {
            var spec = new PodSpec([new PodContainerSpec("app", Reference) { Command = ["sleep", "100000"] }]) { Rootfs = mode };
            Sandbox pod = await CreatePodAsync(spec, ct, OpenXattrImageAsync);
            await using (pod)
            {
                (int code, string stdout, string stderr) = await RunAsync(pod, "app", ["perl", "-e", ListXattrs, .. XattrLayer.Expected.Keys.Select(p => "/" + p)]);
                Assert.True(code == 0, $"{mode}: perl exited {code}: {stderr}");
                seen[mode] = Parse(stdout);
            }
        }
        Fixture.AssertNothingLeft();

        foreach ((PodRootfsMode mode, Dictionary<string, Dictionary<string, string>> actual) in seen)
        {
            foreach ((string path, IReadOnlyDictionary<string, byte[]> expected) in XattrLayer.Expected)
            {
                // virtiofsd runs without CAP_SYS_ADMIN: trusted.* stays on the host (docs/ARCHITECTURE.md, "Pods").
                var visible = expected.Where(a => mode == PodRootfsMode.Block || !a.Key.StartsWith("trusted.", StringComparison.Ordinal))
                    .ToDictionary(a => a.Key, a => Convert.ToHexStringLower(a.Value));
                Dictionary<string, string> got = actual.GetValueOrDefault("/" + path) ?? [];
                Assert.True(visible.Count == got.Count && visible.All(a => got.GetValueOrDefault(a.Key) == a.Value),
                    $"{mode} /{path}: expected [{string.Join(", ", visible.Select(a => $"{a.Key}={a.Value}"))}] got [{string.Join(", ", got.Select(a => $"{a.Key}={a.Value}"))}]");
            }
        }
    }

    /// <summary>"PATH NAME HEX" lines by path and name (a failed call gives "PATH ! ERROR" and fails the test).</summary>
    private static Dictionary<string, Dictionary<string, string>> Parse(string listing)
    {
        var result = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        foreach (string line in listing.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] f = line.Split(' ', 3);
            Assert.True(f.Length == 3 && f[1] != "!", $"the guest could not read attributes: {line}");
            if (!result.TryGetValue(f[0], out Dictionary<string, string>? names))
            {
                result[f[0]] = names = new Dictionary<string, string>(StringComparer.Ordinal);
            }
            names[f[1]] = f[2];
        }
        return result;
    }
}
