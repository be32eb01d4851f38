using Vessel.IntegrationTests.Templates;
using static Vessel.IntegrationTests.Sandboxes.SandboxShell;

namespace Vessel.IntegrationTests.Guest;

/// <summary>
/// Template builds on the guest kit: a build VM, a snapshot and resumed sandboxes at 128 MiB,
/// and many default-memory builds in a row (the failure that started the kit disk: a 256 MiB
/// guest could not unpack the old 85 MB initramfs).
/// </summary>
[Collection(GuestKitCollection.Name)]
public sealed class GuestTemplateTests(GuestKitEnvironment env)
{
    private TemplateSpec Spec(string name, int? memoryMb) =>
        (memoryMb is { } m ? Template.From(env.ImageReference).MemoryMb(m) : Template.From(env.ImageReference))
            .Named(name).DiskSize("64M")
            .Run("mkdir -p /srv && echo ok > /srv/health")
            .Start("while true; do cat /srv/health > /tmp/served.new && mv /tmp/served.new /tmp/served; sleep 1; done") // a rename: a reader never sees the file truncated
            .Ready("test -s /tmp/served")
            .ToSpec();

    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "root", Timeout = 600_000)]
    public async Task A_template_builds_snapshots_and_resumes_at_128_MiB_with_the_guest_clock_set_to_the_hosts()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        TemplateHome home = await env.OpenTemplateHomeAsync("tpl-128", cts.Token);
        await home.Builder.BuildAsync(Spec("small", 128), new TemplateBuildOptions(), null, cts.Token);
        TemplateRecord record = (await home.State.GetTemplateAsync("small", cts.Token))!;
        Assert.NotNull(record.SnapshotDirectory);
        for (int i = 0; i < 2; i++)
        {
            await using Sandbox resumed = await home.Manager.CreateFromTemplateAsync(home.Layers, record, new SandboxOptions(), restore: true, cts.Token);
            Assert.True(resumed.Timings.Restored);
            Assert.Equal("ok\n", await OutputAsync(resumed, "cat /tmp/served"));
            Assert.InRange(long.Parse(await OutputAsync(resumed, "awk '/MemTotal/ {print $2}' /proc/meminfo"), CultureInfo.InvariantCulture), 80_000, 131_072);
            // The snapshot's clock was replaced by the host's at the restore.
            double guest = double.Parse(await OutputAsync(resumed, "busybox adjtimex | awk '/tv_sec/ {s=$2} /tv_usec/ {u=$2} END {printf \"%d.%06d\\n\", s, u}'"), CultureInfo.InvariantCulture);
            Assert.InRange(guest - (DateTimeOffset.UtcNow - DateTimeOffset.UnixEpoch).TotalSeconds, -2.0, 0.5);
        }
        env.AssertNothingLeft();
    }

    // Costly: 20 build VMs booted and snapshotted (--no-cache), a few minutes under TCG.
    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "root", Timeout = 2_400_000)]
    public async Task Twenty_default_memory_template_builds_in_a_row_pass_costly_20_boots()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(39));
        TemplateHome home = await env.OpenTemplateHomeAsync("tpl-20", cts.Token);
        TemplateSpec spec = Spec("twenty", memoryMb: null);
        Assert.Equal(Vmm.VmConfig.DefaultMemoryMiB, spec.MemoryMb);
        for (int i = 0; i < 20; i++)
        {
            TemplateBuildResult result = await home.Builder.BuildAsync(spec, new TemplateBuildOptions { NoCache = true }, null, cts.Token);
            Assert.All(result.Phases, p => Assert.False(p.Cached));
        }
        env.AssertNothingLeft();
    }
}
