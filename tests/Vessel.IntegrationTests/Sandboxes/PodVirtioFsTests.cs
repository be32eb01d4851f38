using System.Formats.Tar;
using System.Text;
using Vessel.Agent;
using Vessel.Common;
using Vessel.IntegrationTests.Rootfs;
using Vessel.Oci;
using Vessel.Sandboxes;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>Pods on virtio-fs lowers (issue 15): unpacked trees by digest, served by a virtiofsd per VM.</summary>
[Collection(SandboxCollection.Name)]
public sealed class PodVirtioFsTests : PodTestBase
{
    public PodVirtioFsTests(SandboxEnvironment environment)
        : base(environment)
    {
    }

    /// <summary>Processes whose command line names <paramref name="text"/>.</summary>
    private static IReadOnlyList<int> ProcessesNaming(string text) => ProcessTable.Matching(c => c.Contains(text, StringComparison.Ordinal));

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "debugfs", "root", Timeout = 600_000)]
    public async Task Two_containers_from_two_images_on_virtiofs_see_only_their_own_image_and_virtiofsd_and_its_mounts_go_with_the_sandbox()
    {
        PodSpec spec = TwoImages() with { Rootfs = PodRootfsMode.Virtiofs };
        Sandbox pod = await CreatePodAsync(spec, CancellationToken.None);
        string socket = Path.Combine(pod.WorkDirectory, "fs.sock");
        await using (pod)
        {
            await PodTests.AssertTwoImagesIsolatedAsync(pod);

            // The lowers come over virtio-fs: the only disk is the kit's.
            Assert.Contains("lowerdir=/vessel/lowers/", (await RunAsync(pod, "web", "cat", "/proc/self/mountinfo")).Stdout, StringComparison.Ordinal);
            Assert.NotEqual(0, (await RunAsync(pod, "web", "test", "-e", "/dev/vdb")).Code);

            // virtiofsd runs for this VM; none of its mounts is visible on the host.
            Assert.NotEmpty(ProcessesNaming(socket));
            Assert.True(File.Exists(socket));
            string hostMounts = await File.ReadAllTextAsync("/proc/self/mountinfo");
            Assert.DoesNotContain(Home.ImageTrees, hostMounts, StringComparison.Ordinal);
            Assert.DoesNotContain(pod.WorkDirectory, hostMounts, StringComparison.Ordinal);

            // The trees are content-addressed by the images' digests.
            foreach (PodContainer c in pod.Pod!.Containers)
            {
                Assert.True(Directory.Exists(Home.ImageTree(c.ContentDigest["sha256:".Length..])), c.ContentDigest);
            }

            // Pausing is refused, naming the QEMU limitation, and the pod keeps running.
            VesselException refused = await Assert.ThrowsAsync<VesselException>(() => pod.PauseAsync(Fixture.Work!.Combine("paused-vfs"), null!, null, CancellationToken.None));
            Assert.Equal(VesselErrorReason.Conflict, refused.Reason);
            Assert.Contains("QEMU 7.2", refused.Message, StringComparison.Ordinal);
            Assert.Contains("vhost-user-fs", refused.Message, StringComparison.Ordinal);
            Assert.Equal(0, (await RunAsync(pod, "web", "true")).Code);
        }
        Assert.Empty(ProcessesNaming(socket));
        Assert.Empty(ProcessesNaming("virtiofsd --socket-path=" + socket));
        Assert.False(File.Exists(socket));
        Assert.DoesNotContain(pod.WorkDirectory, await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);
        Fixture.AssertNothingLeft();
    }

    [RequiresFact("busybox-image", "tune2fs", "debugfs", "root", Timeout = 300_000)]
    public async Task A_hostile_image_is_unpacked_into_its_tree_with_its_symlinks_kept_as_links_and_nothing_written_outside_the_cache()
    {
        string outside = Fixture.Work!.Combine("outside-vfs");
        Directory.CreateDirectory(outside);
        string victim = Path.Combine(outside, "victim");
        await File.WriteAllTextAsync(victim, "host file\n");

        // Refused outright, naming the entry: an absolute name, a '..' name, and a hard link to a file outside.
        var refused = new (string Name, byte[] Tar, string Expected)[]
        {
            ("vfs-absolute", HostileInputs.Tar((TarEntryType.RegularFile, "/etc/abs-file", "x")), "absolute"),
            ("vfs-dotdot", HostileInputs.Tar((TarEntryType.RegularFile, "a/../../escape", "x")), "escape"),
            ("vfs-hardlink", HostileInputs.Tar((TarEntryType.HardLink, "hl", "../../../../../../" + victim.TrimStart('/'))), ".."),
        };
        foreach ((string name, byte[] tar, string expected) in refused)
        {
            string layout = Fixture.Work!.Combine("hostile-" + name);
            HostileInputs.WriteOciLayout(layout, tar, gzip: false, "amd64", viaIndex: false);
            var spec = new PodSpec([new PodContainerSpec("bad", $"oci:{layout}:{HostileInputs.Tag}") { Command = ["true"] }]) { Rootfs = PodRootfsMode.Virtiofs };
            Exception e = await Assert.ThrowsAnyAsync<Exception>(() => CreatePodAsync(spec, CancellationToken.None));
            Assert.True(e is VesselException or InvalidDataException, e.ToString());
            Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        }

        // Accepted: symlinks pointing out stay links (never
        // followed on the host, even by a later entry through them), a hard link inside stays one
        // (one inode, two names), a setuid file keeps its bit.
        byte[] accepted = AcceptedHostileTar(outside);
        string acceptedLayout = Fixture.Work!.Combine("hostile-vfs-accepted");
        HostileInputs.WriteOciLayout(acceptedLayout, accepted, gzip: false, "amd64", viaIndex: false);
        await using IImageSource source = await OpenImageAsync($"oci:{acceptedLayout}:{HostileInputs.Tag}", CancellationToken.None);
        PodLower lower = await PodLower.EnsureAsync(PodLower.Cache(Home.Images), source, CancellationToken.None);
        PodTree tree = await PodTree.EnsureAsync(Home, lower, CancellationToken.None);

        Assert.StartsWith(Home.ImageTrees + "/", tree.Path, StringComparison.Ordinal);
        Assert.Equal("absolute\n", await File.ReadAllTextAsync(Path.Combine(tree.Path, "etc", "abs-file")));
        Assert.Equal(outside, new FileInfo(Path.Combine(tree.Path, "out")).LinkTarget);
        Assert.Equal("../../../../../..", new FileInfo(Path.Combine(tree.Path, "up")).LinkTarget);
        Assert.Equal("absolute\n", await File.ReadAllTextAsync(Path.Combine(tree.Path, "copy")));
        Assert.Equal(InodeOf(Path.Combine(tree.Path, "etc", "abs-file")), InodeOf(Path.Combine(tree.Path, "copy")));
        if (!OperatingSystem.IsWindows())
        {
            Assert.True(File.GetUnixFileMode(Path.Combine(tree.Path, "suid")).HasFlag(UnixFileMode.SetUser), "the setuid bit was lost");
        }
        Assert.Equal(["victim"], Directory.GetFileSystemEntries(outside).Select(Path.GetFileName));
        Assert.Equal("host file\n", await File.ReadAllTextAsync(victim));
        Assert.Empty(Directory.GetDirectories(Home.ImageTrees, ".tmp-*"));
        Fixture.AssertNothingLeft();
    }

    private static ulong InodeOf(string path)
    {
        using Microsoft.Win32.SafeHandles.SafeFileHandle handle = File.OpenHandle(path);
        return (Vessel.Blocks.LinuxFile.TryGetIdentity(handle) ?? throw new IOException("no statx for " + path)).Inode;
    }

    private static byte[] AcceptedHostileTar(string outside)
    {
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "etc/") { Mode = (UnixFileMode)0x1ED });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "etc/abs-file") { Mode = (UnixFileMode)0x1A4, DataStream = new MemoryStream("absolute\n"u8.ToArray()) });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "out") { LinkName = outside, Mode = (UnixFileMode)0x1FF });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "up") { LinkName = "../../../../../..", Mode = (UnixFileMode)0x1FF });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.HardLink, "copy") { LinkName = "etc/abs-file" });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "suid") { Mode = (UnixFileMode)0x9ED, DataStream = new MemoryStream("#!/bin/sh\n"u8.ToArray()) });
        }
        return buffer.ToArray();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "debugfs", "root", Timeout = 600_000)]
    public async Task Images_prune_removes_an_unused_tree_and_keeps_the_one_a_live_pod_serves()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        CancellationToken ct = cts.Token;
        // The variant's tree exists but no sandbox serves it.
        await using (IImageSource variant = await OpenImageAsync(TestImages.BusyboxVariantTarball, ct))
        {
            await PodTree.EnsureAsync(Home, await PodLower.EnsureAsync(PodLower.Cache(Home.Images), variant, ct), ct);
        }
        var spec = new PodSpec([new PodContainerSpec("web", TestImages.BusyboxOciReference) { Command = ["sleep", "100000"] }]) { Rootfs = PodRootfsMode.Virtiofs };
        Sandbox pod = await CreatePodAsync(spec, ct);
        await using (pod)
        {
            string used = Home.ImageTree(pod.Pod!.Containers[0].ContentDigest["sha256:".Length..]);
            List<string> unused = Directory.GetDirectories(Home.ImageTrees).Where(d => d != used).ToList();
            Assert.NotEmpty(unused);

            ProcessResult dry = await VesselCli.RunAsync(ct, "images", "prune", "--dry-run", "--home", Fixture.StateDirectory);
            Assert.True(dry.ExitCode == 0, dry.StandardError);
            Assert.All(unused, d => Assert.Contains($"tree  ", dry.StandardOutput.Split('\n').Single(l => l.Contains(d, StringComparison.Ordinal)), StringComparison.Ordinal));
            Assert.DoesNotContain(used, dry.StandardOutput, StringComparison.Ordinal);
            Assert.Contains("dry run", dry.StandardOutput, StringComparison.Ordinal);
            Assert.All(unused, d => Assert.True(Directory.Exists(d)));

            ProcessResult done = await VesselCli.RunAsync(ct, "images", "prune", "--home", Fixture.StateDirectory);
            Assert.True(done.ExitCode == 0, done.StandardError);
            Assert.Contains("freed", done.StandardOutput, StringComparison.Ordinal);
            Assert.All(unused, d => Assert.False(Directory.Exists(d), d));
            Assert.True(Directory.Exists(used));
            Assert.Equal("ok\n", (await RunAsync(pod, "web", "sh", "-c", "cat /bin/busybox > /dev/null && echo ok")).Stdout);
        }
        Fixture.AssertNothingLeft();
    }
}
