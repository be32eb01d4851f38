using System.Globalization;
using Vessel.Blocks;
using Vessel.Guest;
using Vessel.Sandboxes;
using Vessel.State;
using Vessel.Templates;
using Vessel.Vmm;

namespace Vessel.Bench;

/// <summary>
/// Host memory per sandbox (docs/BENCHMARKS.md): the proportional set size (Pss in
/// /proc/PID/smaps_rollup) of the QEMU of one idle cold-booted sandbox, and of ten sandboxes
/// resumed from one template (their RAM maps the template's memory file copy-on-write, so
/// shared pages count once across them). Uses only APIs that main had before the guest kit
/// change, so the same code measures both.
/// </summary>
internal static class Pss
{
    public static async Task RunAsync(string rootfs, string image, string state, int memoryMiB)
    {
        GuestKit kit = await new KitBuilder(new KitOptions()).EnsureAsync(CancellationToken.None);
        var manager = new SandboxManager(state, kit);
        await using (Sandbox cold = await manager.CreateAsync(new SandboxOptions { RootfsPath = rootfs, MemoryMiB = memoryMiB, BootTimeout = TimeSpan.FromMinutes(10) }, CancellationToken.None))
        {
            await Task.Delay(TimeSpan.FromSeconds(3));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pss: one idle cold-booted sandbox ({memoryMiB} MiB guest): QEMU {KiB(cold) / 1024.0:0.0} MiB"));
        }

        string home = Path.Combine(state, "home");
        Directory.CreateDirectory(home);
        StateStore store = await StateStore.OpenAsync(Path.Combine(home, "state.db"), CancellationToken.None);
        LayerStore layers = LayerStore.OpenDirectory(Path.Combine(home, "blocks"));
        var builder = new TemplateBuilder(store, layers, new SandboxStepRunner(manager), home);
        TemplateSpec spec = Template.From(image).Named("pss").DiskSize("128M").MemoryMb(memoryMiB)
            .Run("mkdir -p /srv && echo ok > /srv/health")
            .Start("while true; do cat /srv/health > /tmp/served; sleep 1; done")
            .Ready("test -s /tmp/served")
            .ToSpec();
        await builder.BuildAsync(spec, new TemplateBuildOptions(), null, CancellationToken.None);
        TemplateRecord record = (await store.GetTemplateAsync("pss", CancellationToken.None))!;
        var sandboxes = new List<Sandbox>();
        try
        {
            for (int i = 0; i < 10; i++)
            {
                sandboxes.Add(await manager.CreateFromTemplateAsync(layers, record, new SandboxOptions { BootTimeout = TimeSpan.FromMinutes(10) }, restore: true, CancellationToken.None));
            }
            await Task.Delay(TimeSpan.FromSeconds(3));
            long total = sandboxes.Sum(KiB);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"pss: ten sandboxes resumed from one template ({memoryMiB} MiB guests): QEMU total {total / 1024.0:0.0} MiB, {total / 10 / 1024.0:0.0} MiB each"));
        }
        finally
        {
            foreach (Sandbox s in sandboxes)
            {
                await s.DisposeAsync();
            }
        }
    }

    private static long KiB(Sandbox sandbox)
    {
        int pid = ((QemuVm)sandbox.VirtualMachine).Pid;
        string line = File.ReadAllLines($"/proc/{pid}/smaps_rollup").First(l => l.StartsWith("Pss:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
}
