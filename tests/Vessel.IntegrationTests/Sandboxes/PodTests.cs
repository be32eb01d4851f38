using System.Formats.Tar;
using System.Text;
using Vessel.Agent;
using Vessel.Agent.Protocol;
using Vessel.IntegrationTests.Rootfs;
using Vessel.Oci;
using Vessel.Sandboxes;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>Pods (issue 15): several containers from two images in one real VM, block lowers.</summary>
[Collection(SandboxCollection.Name)]
public sealed class PodTests : PodTestBase
{
    public PodTests(SandboxEnvironment environment)
        : base(environment)
    {
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 600_000)]
    public async Task Two_containers_from_two_images_each_see_only_their_own_image_and_their_own_writes()
    {
        Sandbox pod = await CreatePodAsync(TwoImages(), CancellationToken.None);
        await using (pod)
        {
            await AssertTwoImagesIsolatedAsync(pod);
        }
        Fixture.AssertNothingLeft();
    }

    /// <summary>The pod of <see cref="TwoImages"/>: each container sees its own image and writes, on an overlay root with its own namespaces.</summary>
    internal static async Task AssertTwoImagesIsolatedAsync(Sandbox pod)
    {
        Assert.NotNull(pod.Pod);
        Assert.Equal(["web", "side"], pod.Pod.Containers.Select(c => c.Name));
        Assert.NotEqual(pod.Pod.Containers[0].LowerId, pod.Pod.Containers[1].LowerId);

        // Each sees its own image: only the variant has the marker file.
        Assert.Equal(TestImages.VariantMarker, (await RunAsync(pod, "side", "cat", TestImages.VariantMarkerPath)).Stdout);
        Assert.NotEqual(0, (await RunAsync(pod, "web", "test", "-e", TestImages.VariantMarkerPath)).Code);

        // A write in one is not seen in the other, and is seen through the files API.
        Assert.Equal(0, (await RunAsync(pod, "web", "sh", "-c", "echo hello > /written-by-web")).Code);
        Assert.Equal("hello\n", (await RunAsync(pod, "web", "cat", "/written-by-web")).Stdout);
        Assert.NotEqual(0, (await RunAsync(pod, "side", "test", "-e", "/written-by-web")).Code);
        using (var read = new MemoryStream())
        {
            await pod.Agent.InContainer("web").ReadFileAsync("/written-by-web", read, CancellationToken.None);
            Assert.Equal("hello\n", Encoding.UTF8.GetString(read.ToArray()));
        }
        await Assert.ThrowsAsync<AgentException>(() => pod.Agent.InContainer("side").StatAsync("/written-by-web", CancellationToken.None));

        // An overlay root, its own hostname, PID namespace and environment.
        string mounts = (await RunAsync(pod, "web", "mount")).Stdout;
        Assert.Contains("web_ovl on / type overlay", mounts, StringComparison.Ordinal);
        Assert.Equal("web\n", (await RunAsync(pod, "web", "hostname")).Stdout);
        Assert.Equal("sleep", (await RunAsync(pod, "web", "cat", "/proc/1/comm")).Stdout.Trim());
        Assert.Equal("side\n", (await RunAsync(pod, "side", "sh", "-c", "echo $ROLE")).Stdout);
        // The image config's PATH reached the container (the OCI image sets it; the tarball has none).
        Assert.Equal("/usr/sbin:/usr/bin:/sbin:/bin\n", (await RunAsync(pod, "web", "sh", "-c", "echo $PATH")).Stdout);

        // A minimal /dev of its own: the default devices, not the VM's devtmpfs with the pod's image disks.
        string[] dev = (await RunAsync(pod, "side", "ls", "-A", "/dev")).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"], dev);
        Assert.Equal("4\n", (await RunAsync(pod, "side", "sh", "-c", "head -c 4 /dev/urandom | wc -c; echo gone > /dev/null")).Stdout.TrimStart());
        Assert.Equal("crw-rw-rw-", (await RunAsync(pod, "web", "ls", "-l", "/dev/null")).Stdout[..10]);

        IReadOnlyList<ContainerStatus> states = await pod.Agent.ListContainersAsync(CancellationToken.None);
        Assert.All(states, s => Assert.True(s.Running, s.Name + " should run"));
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 600_000)]
    public async Task A_container_that_exits_leaves_the_others_running_and_shows_its_code()
    {
        PodSpec spec = TwoImages(new PodContainerSpec("job", TestImages.BusyboxOciReference) { Command = ["sh", "-c", "echo done; exit 7"] });
        Sandbox pod = await CreatePodAsync(spec, CancellationToken.None);
        await using (pod)
        {
            ContainerStatus? job = null;
            for (int i = 0; i < 200 && job is not { Running: false }; i++)
            {
                job = (await pod.Agent.ListContainersAsync(CancellationToken.None)).Single(c => c.Name == "job");
                await Task.Delay(100);
            }
            Assert.False(job!.Running);
            Assert.Equal(7, job.ExitCode);
            var others = (await pod.Agent.ListContainersAsync(CancellationToken.None)).Where(c => c.Name != "job").ToList();
            Assert.All(others, s => Assert.True(s.Running, s.Name + " should still run"));
            AgentException e = await Assert.ThrowsAsync<AgentException>(() => RunAsync(pod, "job", "true"));
            Assert.Contains("has exited (code 7)", e.Message, StringComparison.Ordinal);
            Assert.Equal(0, (await RunAsync(pod, "web", "true")).Code);
            // The upper is capped: writing past upperMb fails in that container only.
            var full = await RunAsync(pod, "web", "dd", "if=/dev/zero", "of=/fill", "bs=1M", $"count={PodSpec.DefaultUpperMiB + 8}");
            Assert.NotEqual(0, full.Code);
            Assert.Contains("No space left on device", full.Stderr, StringComparison.Ordinal);
            Assert.Equal(0, (await RunAsync(pod, "side", "sh", "-c", "echo ok > /side-file")).Code);
            AgentException missing = await Assert.ThrowsAsync<AgentException>(() => RunAsync(pod, "nope", "true"));
            Assert.Contains("no container 'nope'", missing.Message, StringComparison.Ordinal);
        }
        Fixture.AssertNothingLeft();
    }

    [RequiresFact("qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", Timeout = 300_000)]
    public async Task A_hostile_image_is_refused_naming_the_entry_before_any_vm_starts_and_writes_nothing_outside_the_cache()
    {
        string outside = Fixture.Work!.Combine("outside");
        Directory.CreateDirectory(outside);
        var cases = new (string Name, byte[] Tar, string Expected)[]
        {
            ("dotdot", HostileInputs.Tar((TarEntryType.RegularFile, "../escape", "x")), "escape"),
            ("symlink", HostileInputs.Tar((TarEntryType.SymbolicLink, "etc", outside), (TarEntryType.RegularFile, "etc/planted", "x")), "planted"),
        };
        foreach ((string name, byte[] tar, string expected) in cases)
        {
            string layout = Fixture.Work!.Combine("hostile-" + name);
            HostileInputs.WriteOciLayout(layout, tar, gzip: false, "amd64", viaIndex: false);
            var spec = new PodSpec([new PodContainerSpec("bad", $"oci:{layout}:{HostileInputs.Tag}") { Command = ["true"] }]);
            Exception e = await Assert.ThrowsAnyAsync<Exception>(() => CreatePodAsync(spec, CancellationToken.None));
            Assert.True(e is VesselException or InvalidDataException, e.ToString());
            Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        }
        Assert.Empty(Directory.GetFileSystemEntries(outside));
        Assert.False(File.Exists(Fixture.Work!.Combine("escape")));
        string images = Path.Combine(Fixture.StateDirectory, "images");
        Assert.Empty(Directory.Exists(images) ? Directory.GetFiles(images, "*.partial") : []);
        Fixture.AssertNothingLeft();
    }
}
