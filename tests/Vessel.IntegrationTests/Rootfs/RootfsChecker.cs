using System.Text.Json;
using Vessel.Ext4;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// The read-back check for an ext4 image that <c>vessel rootfs build</c> wrote:
/// <c>e2fsck -fn</c> must find nothing, the kernel must mount it, the provisioning files must
/// be there, and every other entry must equal the oracle's tree.
/// </summary>
internal static class RootfsChecker
{
    /// <summary>Files the builder adds to every image (DESIGN.md, "provisioning files").</summary>
    public static readonly IReadOnlyList<string> ProvisioningFiles = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

    /// <summary>Everything under this directory belongs to Vessel.</summary>
    public const string VesselDirectory = "/.vessel";

    private const int MaxListedDifferences = 60;

    public static bool IsProvisioning(string path)
        => ProvisioningFiles.Contains(path, StringComparer.Ordinal)
            || path == VesselDirectory
            || path.StartsWith(VesselDirectory + "/", StringComparison.Ordinal);

    /// <summary><c>e2fsck -fn IMAGE</c> must exit 0: no problem found, nothing it would change.</summary>
    public static async Task AssertFsckCleanAsync(string image, CancellationToken cancellationToken)
    {
        ProcessResult fsck = await ExternalProcess.RunAsync("e2fsck", ["-fn", image], cancellationToken, timeout: TimeSpan.FromMinutes(5));
        Assert.True(fsck.ExitCode == 0, $"e2fsck -fn {image} exited with {fsck.ExitCode}:\n{fsck.StandardOutput}\n{fsck.StandardError}");
    }

    /// <summary>
    /// Mounts <paramref name="image"/> read-only on a loop device, walks every entry, checks
    /// the provisioning files, unmounts, and asserts no mount or loop device is left.
    /// </summary>
    public static async Task<TreeSnapshot> ReadBackAsync(string image, string workDirectory, CancellationToken cancellationToken)
    {
        LoopMount mount = await LoopMount.MountAsync(image, workDirectory, readOnly: true, cancellationToken);
        TreeSnapshot snapshot;
        try
        {
            snapshot = TreeSnapshot.Take(mount.MountPoint, cancellationToken: cancellationToken);
            AssertProvisioningFiles(mount.MountPoint, snapshot);
        }
        finally
        {
            await mount.DisposeAsync();
        }
        await mount.AssertReleasedAsync();
        return snapshot;
    }

    /// <summary>The whole check: fsck, read back, provisioning files, entry-by-entry comparison with the oracle.</summary>
    public static async Task<TreeSnapshot> AssertImageMatchesAsync(string image, TreeSnapshot expected, string workDirectory, CancellationToken cancellationToken)
    {
        await AssertFsckCleanAsync(image, cancellationToken);
        TreeSnapshot actual = await ReadBackAsync(image, workDirectory, cancellationToken);
        AssertSameTree(expected, actual);
        return actual;
    }

    /// <summary>Compares the trees with the provisioning paths left out and fails listing the differences.</summary>
    public static void AssertSameTree(TreeSnapshot expected, TreeSnapshot actual)
    {
        List<string> differences = CompareIgnoringProvisioning(expected, actual);
        if (differences.Count > 0)
        {
            var message = new StringBuilder();
            message.Append($"{differences.Count} differences between the oracle ({expected.Root}) and the image:\n");
            foreach (string d in differences.Take(MaxListedDifferences))
            {
                message.Append("  ").Append(d).Append('\n');
            }
            Assert.Fail(message.ToString());
        }
    }

    public static List<string> CompareIgnoringProvisioning(TreeSnapshot expected, TreeSnapshot actual)
    {
        // lost+found is ext4's own; an /etc that the image lacked exists only to hold the
        // provisioning files; adding those files may touch the parents' mtimes.
        bool dropLostFound = !expected.Entries.ContainsKey("/lost+found");
        TreeSnapshot e = expected.Without(IsProvisioning);
        TreeSnapshot a = actual.Without(p => IsProvisioning(p)
            || (dropLostFound && (p == "/lost+found" || p.StartsWith("/lost+found/", StringComparison.Ordinal))));
        var comparison = new TreeComparison();
        comparison.IgnoreMtime.Add("/");
        comparison.IgnoreMtime.Add("/etc");
        if (!e.Entries.ContainsKey("/etc"))
        {
            if (a.Entries.TryGetValue("/etc", out TreeEntry? etc) && etc.Type != FsKind.Directory)
            {
                return [$"/etc: created for the provisioning files but is a {etc.Type}"];
            }
            comparison.AllowedExtras.Add("/etc");
        }
        return comparison.Compare(e, a);
    }

    /// <summary>
    /// /etc/hosts, /etc/resolv.conf, /etc/hostname are regular files; /.vessel/busybox is an
    /// executable ELF; /.vessel/image.json is JSON.
    /// </summary>
    public static void AssertProvisioningFiles(string mountPoint, TreeSnapshot snapshot)
    {
        foreach (string path in ProvisioningFiles)
        {
            Assert.True(snapshot.Entries.TryGetValue(path, out TreeEntry? entry), $"provisioning file {path} is missing");
            Assert.True(entry.Type == FsKind.RegularFile, $"{path} is a {entry.Type}, not a regular file");
        }
        Assert.Contains("localhost", File.ReadAllText(mountPoint + "/etc/hosts"), StringComparison.Ordinal);

        Assert.True(snapshot.Entries.TryGetValue(Provisioning.GuestBusybox, out TreeEntry? busybox), "/.vessel/busybox is missing");
        Assert.Equal(FsKind.RegularFile, busybox.Type);
        Assert.True((busybox.Permissions & 0x49) == 0x49, $"/.vessel/busybox is not executable (mode {Convert.ToString(busybox.Permissions, 8)})");
        byte[] magic = new byte[4];
        using (FileStream f = File.OpenRead(mountPoint + Provisioning.GuestBusybox))
        {
            f.ReadExactly(magic);
        }
        Assert.Equal("\u007fELF"u8.ToArray(), magic);

        Assert.True(snapshot.Entries.ContainsKey(VesselDirectory + "/image.json"), "/.vessel/image.json is missing");
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(mountPoint + VesselDirectory + "/image.json"));
    }

    /// <summary>OUT.json exists, is JSON, names a sha256 digest and contains each of <paramref name="expectedTexts"/>.</summary>
    public static void AssertMetadata(string image, params string[] expectedTexts)
    {
        string path = image + ".json";
        Assert.True(File.Exists(path), $"{path} was not written");
        string text = File.ReadAllText(path);
        using JsonDocument document = JsonDocument.Parse(text);
        Assert.Contains("sha256:", text, StringComparison.Ordinal);
        foreach (string expected in expectedTexts)
        {
            Assert.Contains(expected, text, StringComparison.Ordinal);
        }
    }
}
