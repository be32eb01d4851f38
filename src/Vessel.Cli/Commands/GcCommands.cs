using System.CommandLine;
using Vessel.Common;
using Vessel.Guest;
using Vessel.Storage;

namespace Vessel.Cli.Commands;

internal static class GcCommands
{
    public static Command Create()
    {
        var dryRun = new Option<bool>("--dry-run") { Description = "List what would be removed, with sizes and a total; remove nothing." };
        var home = HomeOption.Create();
        var command = new Command("gc",
            "Remove what nothing uses: leftovers of dead processes, block layers and phase cache entries no template or sandbox uses, "
            + "snapshots nothing names, unused guest kits (in the home that holds the kit cache) and cached image rootfs files. "
            + "Waits for template builds in the home to finish; never removes what a template, a paused or running sandbox uses.")
        {
            dryRun, home,
        };
        return command.WithAction(async (parse, token) =>
        {
            VesselHome dir = HomeOption.GetExisting(parse, home);
            bool dry = parse.GetValue(dryRun);
            // On a shared state (VESSEL_STATE), every node's rows keep what they name and no shared row is removed (docs/cluster.md, "gc and prune").
            var options = new GcOptions { DryRun = dry, SharedState = VesselSettings.Current.State, Node = VesselSettings.Current.Node };
            string kitCache = KitOptions.DefaultCacheDirectory;
            if (Path.GetFullPath(kitCache) == dir.Kits && Directory.Exists(Path.Combine(kitCache, "kits")))
            {
                // The kit this Vessel boots is kept, so it must be known (built if missing, as every VM command does).
                GuestKit current = await KitCommands.EnsureKitAsync(token);
                options = options with { KitCache = kitCache, CurrentKitId = current.Manifest.Id };
            }
            else
            {
                await Console.Error.WriteLineAsync($"vessel: kits are not collected here: the kit cache {kitCache} belongs to another home (run 'vessel gc' there)");
            }
            GcResult result = await new GarbageCollector(dir, options).RunAsync(m => Console.Error.WriteLine("vessel: " + m), token);
            return await PrintAsync(result, dry);
        });
    }

    /// <summary>Prints a collection's items with sizes, the total and its errors; the exit status (1 when something could not be removed).</summary>
    internal static async Task<int> PrintAsync(GcResult result, bool dry)
    {
        string verb = dry ? "would remove" : "removed";
        foreach (GcItem item in result.Items)
        {
            string size = item.Kind == "cache" ? "-" : ByteSize.Format(item.Bytes); // a database row
            Console.WriteLine($"{verb}  {item.Kind,-8}  {size,10}  {item.Path}  ({item.Reason})");
        }
        Console.WriteLine(result.Items.Count == 0 ? "nothing to remove" : $"{(dry ? "would free" : "freed")} {ByteSize.Format(result.TotalBytes)} in {result.Items.Count} item{(result.Items.Count == 1 ? "" : "s")}"
            + (dry ? " (dry run: nothing was removed)" : string.Empty));
        if (result.FailedBuilds > 0)
        {
            Console.WriteLine($"marked {result.FailedBuilds} build{(result.FailedBuilds == 1 ? "" : "s")} of dead processes as failed");
        }
        foreach (string error in result.Errors)
        {
            await Console.Error.WriteLineAsync("vessel: " + error);
        }
        return result.Errors.Count == 0 ? 0 : 1;
    }
}
