namespace Vessel.IntegrationTests.Shim;

/// <summary>
/// Seed 002 in the shim: an image whose labels name a kernel, an initrd and a boot config
/// (urunc's names and Vessel's) boots that kernel through a containerd snapshot view under a
/// lease, and Delete, or containerd's <c>delete</c> after kill -9 of the shim, leaves no view,
/// lease, bind or mount (asked of containerd with ctr, and of /proc/self/mountinfo).
/// </summary>
[Collection(ShimCollection.Name)]
public sealed class ShimBootArtifactTests(ShimFixture ctrd) : TimedTestBase(ShimFixture.TestTimeout)
{
    [ShimFact]
    public async Task An_image_naming_its_kernel_boots_it_from_a_snapshot_view_and_delete_removes_view_lease_and_binds()
    {
        await ctrd.WithDetachedTaskAsync("b1", [ShimFixture.BootImage, "b1", "sleep", "1d"], async () =>
        {
            string bundle = ctrd.Bundle("b1");
            ProcessResult cmdline = await ctrd.CtrAsync(Deadline, "task", "exec", "--exec-id", "e1", "b1", "cat", "/proc/cmdline");
            ShimFixture.AssertExit(cmdline, 0);
            Assert.Contains(ShimFixture.BootParameter, cmdline.StandardOutput.Split(' ', '\n'));

            // The VMM boots the image's kernel, bound read-only from the view, and the combined initrd.
            int shim = ctrd.ShimPid("b1") ?? throw new InvalidOperationException("no shim process for b1");
            int vmm = Assert.Single(ctrd.MarkedProcesses(), p => p != shim);
            string[] args = File.ReadAllText($"/proc/{vmm}/cmdline").Split('\0');
            string kernel = Path.Combine(bundle, "vessel-boot", "boot", "vmlinuz");
            string initrd = Path.Combine(bundle, "vessel-initrd.img");
            Assert.Equal(kernel, args[Array.IndexOf(args, "-kernel") + 1]);
            Assert.Equal(initrd, args[Array.IndexOf(args, "-initrd") + 1]);
            Assert.True(LinuxMount.IsMountPoint(kernel), $"{kernel} is not a bind from the view");
            Assert.True(LinuxMount.IsMountPoint(Path.Combine(bundle, ViewState.MountDirectoryName)), "the view is not mounted in the bundle");
            Assert.Equal(await File.ReadAllBytesAsync(ctrd.Kit!.KernelPath, Deadline), await File.ReadAllBytesAsync(kernel, Deadline));
            byte[] combined = await File.ReadAllBytesAsync(initrd, Deadline);
            byte[] kitInitramfs = await File.ReadAllBytesAsync(ctrd.Kit.InitramfsPath, Deadline);
            Assert.Equal(ctrd.BootInitrd, combined[..ctrd.BootInitrd.Length]);
            Assert.Equal(kitInitramfs, combined[^kitInitramfs.Length..]);

            // containerd holds the view under the lease while the task runs.
            Assert.Contains("vessel-view-", (await ctrd.CtrAsync(Deadline, "snapshots", "ls")).EnsureSuccess().StandardOutput, StringComparison.Ordinal);
            Assert.Contains("vessel-", (await ctrd.CtrAsync(Deadline, "leases", "ls")).EnsureSuccess().StandardOutput, StringComparison.Ordinal);

            await ctrd.KillAndWaitStoppedAsync("b1", Deadline);
            (await ctrd.CtrAsync(Deadline, "task", "rm", "b1")).EnsureSuccess();
        }, Deadline);
        await ctrd.AssertNoViewOrLeaseAsync(Deadline);
    }

    [ShimFact]
    public async Task After_kill_9_of_a_shim_that_booted_boot_artifacts_delete_removes_view_lease_and_binds()
    {
        await ctrd.WithDetachedTaskAsync("b2", [ShimFixture.BootImage, "b2", "sleep", "1d"], async () =>
        {
            Assert.True(File.Exists(Path.Combine(ctrd.Bundle("b2"), ViewState.FileName)), "no boot-artifact state in the bundle");
            await ctrd.KillShimAndWaitGoneAsync("b2", Deadline);
        }, Deadline);
        await ctrd.AssertNoViewOrLeaseAsync(Deadline);
    }
}
