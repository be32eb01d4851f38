using System.CommandLine;
using Vessel.Common;
using Vessel.Guest;

namespace Vessel.Cli.Commands;

internal static class KitCommands
{
    public static Command Create() => new Command("kit", "Build and check the guest kit (kernel, initramfs, kit disk with the agent).")
        .WithSubcommands(CreateBuild(), CreateCheck());

    /// <summary>
    /// The guest kit (built on first use), with progress on stderr: what every VM command boots.
    /// Kits are content-addressed (the id hashes every input), so one cache serves every --home:
    /// the kits/ of $VESSEL_HOME or the default home (<see cref="KitOptions.DefaultCacheDirectory"/>).
    /// A command given another --home does not build the same kit again.
    /// </summary>
    internal static Task<GuestKit> EnsureKitAsync(CancellationToken cancellationToken)
    {
        var progress = new Progress<string>(m => Console.Error.WriteLine("vessel: " + m));
        return new KitBuilder(new KitOptions(), progress).EnsureAsync(cancellationToken);
    }

    private static Command CreateBuild()
    {
        var cache = new Option<string?>("--cache") { Description = "Kit cache directory (default: kits/ in $VESSEL_HOME or the default home, shared by every --home)." };
        var agent = new Option<string?>("--agent") { Description = "Published agent directory (default: agent/ beside the CLI, or $VESSEL_AGENT_DIR)." };
        var command = new Command("build", "Download the pinned Debian cloud kernel (apt-get download, SHA-256 checked) and write the initramfs (busybox, virtio modules, init) and the read-only kit disk (the agent). Reuses a cached kit with the same inputs.")
        {
            cache, agent,
        };
        return command.WithAction(async (parse, token) =>
        {
            var options = new KitOptions
            {
                CacheDirectory = parse.GetValue(cache) ?? KitOptions.DefaultCacheDirectory,
                AgentDirectory = parse.GetValue(agent),
            };
            var progress = new Progress<string>(m => Console.Error.WriteLine("vessel: " + m));
            GuestKit kit = await new KitBuilder(options, progress).EnsureAsync(token);
            Console.WriteLine($"kit {kit.Manifest.Id}: {kit.Directory}");
            Console.WriteLine($"  kernel    {kit.Manifest.KernelPackage} {kit.Manifest.KernelVersion} ({new FileInfo(kit.KernelPath).Length / 1024} KiB)");
            Console.WriteLine($"  initramfs {new FileInfo(kit.InitramfsPath).Length / 1024} KiB, modules: {string.Join(' ', kit.Manifest.Modules)}");
            Console.WriteLine($"  kit disk  {new FileInfo(kit.KitDiskPath).Length / 1024} KiB (read-only ext4: the agent and its libraries)");
            return 0;
        });
    }

    private static Command CreateCheck()
    {
        var dir = new Argument<string>("dir") { Description = "A kit directory (holding kit.json)." };
        var command = new Command("check", "Verify a kit's kernel, initramfs and kit disk against its manifest.") { dir };
        return command.WithAction((parse, token) =>
        {
            GuestKit kit = GuestKit.Load(parse.GetValue(dir)!);
            Console.WriteLine($"kit {kit.Manifest.Id}: ok");
            return Task.FromResult(0);
        });
    }
}
