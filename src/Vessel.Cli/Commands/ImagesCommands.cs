using System.CommandLine;
using Vessel.Common;
using Vessel.Storage;

namespace Vessel.Cli.Commands;

/// <summary><c>vessel images</c>: the home's image caches (rootfs and pod lowers in <c>images/</c>, unpacked trees in <c>images/trees/</c>).</summary>
internal static class ImagesCommands
{
    public static Command Create()
    {
        var command = new Command("images", "The image caches: rootfs files and pods' read-only lowers built from images, and the unpacked trees virtio-fs pods serve.");
        command.Subcommands.Add(Prune());
        return command;
    }

    private static Command Prune()
    {
        var dryRun = new Option<bool>("--dry-run") { Description = "List what would be removed, with sizes and a total; remove nothing." };
        var home = HomeOption.Create();
        var command = new Command("prune",
            "Remove cached image rootfs files and pod lowers that no running VM has open, and unpacked image trees that no live sandbox serves "
            + "(each is built again when next needed). Waits for template builds and pauses in the home to finish.")
        {
            dryRun, home,
        };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async token =>
        {
            VesselHome dir = HomeOption.GetExisting(parse, home);
            bool dry = parse.GetValue(dryRun);
            GcResult result = await new GarbageCollector(dir, new GcOptions { DryRun = dry, ImagesOnly = true, SharedState = VesselSettings.Current.State, Node = VesselSettings.Current.Node })
                .RunAsync(m => Console.Error.WriteLine("vessel: " + m), token);
            return await GcCommands.PrintAsync(result, dry);
        }, ct));
        return command;
    }
}
