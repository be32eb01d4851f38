using System.CommandLine;
using System.Diagnostics;
using Vessel.Blocks;
using Vessel.Common;

namespace Vessel.Cli.Commands;

internal static class BlocksCommands
{
    /// <summary>The store directory option shared by the blocks and nbd commands.</summary>
    public static Option<string> StoreOption() => new("--store")
    {
        Description = "Block store: a directory (default: blocks/ in Vessel's home, $VESSEL_HOME) or s3://BUCKET/PREFIX (endpoint and keys from VESSEL_S3_*).",
        DefaultValueFactory = _ => VesselSettings.Current.Home.Blocks,
    };

    /// <summary>Opens the store a --store value names: a directory, or a bucket read chunk by chunk.</summary>
    public static LayerStore OpenStore(string store) => S3StoreOptions.IsS3(store)
        ? LayerStore.OpenS3(VesselSettings.Current.S3Store(store))
        : LayerStore.OpenDirectory(store);

    /// <summary>Where an overlay's copy-on-write cache goes for <paramref name="store"/>: its staging directory, or the home's work directory for a bucket.</summary>
    public static string StagingFor(string store) => S3StoreOptions.IsS3(store)
        ? VesselSettings.Current.Home.Work
        : Path.Combine(store, "staging");

    public static Command Create() => new Command("blocks", "Work on the layered block store: builds of disk images with copy-on-write layers.")
        .WithSubcommands(Import(), Export(), Flatten(), List(), Info(), Verify(), Delete(), Copy());

    private static Command Import()
    {
        var image = new Argument<string>("image") { Description = "A flat (raw) disk image, e.g. an ext4 file." };
        var store = StoreOption();
        var blockSize = new Option<int>("--block-size") { Description = "Block size in bytes (power of two, 512 to 1 MiB).", DefaultValueFactory = _ => BuildHeader.DefaultBlockSize };
        var command = new Command("import", "Store a flat image as a new base build; all-zero blocks and holes take no space. Prints the build id.")
        {
            image, store, blockSize,
        };
        return command.WithAction(async (parse, ct) =>
        {
            string path = parse.GetValue(image)!;
            int bs = parse.GetValue(blockSize);
            if (bs < BuildHeader.MinBlockSize || bs > BuildHeader.MaxBlockSize || (bs & (bs - 1)) != 0)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"--block-size {bs} is not a power of two between 512 and 1048576.");
            }
            LayerStore layers = OpenStore(parse.GetValue(store)!);
            long size = new FileInfo(path).Exists ? new FileInfo(path).Length : 0;
            return await StoreAsync(() => layers.ImportAsync(path, bs, new ConsoleProgress("importing", size), ct),
                (header, seconds) => $"imported {ByteSize.Format(header.Size)} in {seconds:0.00} s: {ByteSize.Format(header.DataLength)} of data stored, {header.Mapping.Count} extents");
        });
    }

    /// <summary>Stores a build, says on stderr what it took (<paramref name="describe"/> gets the header and the seconds) and prints its id on stdout.</summary>
    private static async Task<int> StoreAsync(Func<Task<BuildHeader>> store, Func<BuildHeader, double, string> describe)
    {
        var sw = Stopwatch.StartNew();
        BuildHeader header = await store();
        await Console.Error.WriteLineAsync(describe(header, sw.Elapsed.TotalSeconds));
        Console.WriteLine(header.BuildId);
        return 0;
    }

    private static Command Export()
    {
        var baseBuild = new Argument<string>("base") { Description = "The build the image was derived from (id or unique prefix)." };
        var image = new Argument<string>("image") { Description = "A flat image of the same size, e.g. a flattened copy you changed." };
        var store = StoreOption();
        var work = new Option<string?>("--work-dir") { Description = "Where the temporary copy-on-write cache goes (default: the store's staging directory)." };
        var command = new Command("export",
            "Store the blocks of IMAGE that differ from BASE as a new build on top of it (generation + 1); only changed blocks take space. Prints the new build id.")
        {
            baseBuild, image, store, work,
        };
        return command.WithAction(async (parse, ct) =>
        {
            LayerStore layers = OpenStore(parse.GetValue(store)!);
            Guid id = await layers.ResolveAsync(parse.GetValue(baseBuild)!, ct);
            string workDir = parse.GetValue(work) ?? StagingFor(parse.GetValue(store)!);
            return await StoreAsync(() => BlockDiff.ExportImageAsync(layers, id, parse.GetValue(image)!, workDir, new ConsoleProgress("comparing", null), ct),
                (header, seconds) => $"exported generation {header.Generation} over {id} in {seconds:0.00} s: {ByteSize.Format(header.DataLength)} of changed data stored");
        });
    }

    private static Command Flatten()
    {
        var build = new Argument<string>("build") { Description = "Build id or unique prefix." };
        var output = new Argument<string>("output") { Description = "The flat image file to write (replaced atomically if it exists)." };
        var store = StoreOption();
        var command = new Command("flatten", "Write a build as one flat sparse image (zero ranges stay holes).") { build, output, store };
        return command.WithAction(async (parse, ct) =>
        {
            LayerStore layers = OpenStore(parse.GetValue(store)!);
            Guid id = await layers.ResolveAsync(parse.GetValue(build)!, ct);
            BuildHeader header = await layers.ReadHeaderAsync(id, ct);
            var sw = Stopwatch.StartNew();
            await layers.FlattenAsync(id, parse.GetValue(output)!, new ConsoleProgress("flattening", header.Size), ct);
            await Console.Error.WriteLineAsync($"flattened {id} ({ByteSize.Format(header.Size)}) in {sw.Elapsed.TotalSeconds:0.00} s");
            return 0;
        });
    }

    private static Command List()
    {
        var store = StoreOption();
        var command = new Command("list", "List the builds in the store.") { store };
        return command.WithAction(async (parse, ct) =>
        {
            LayerStore layers = OpenStore(parse.GetValue(store)!);
            Console.WriteLine($"{"BUILD",-36}  {"GEN",3}  {"SIZE",10}  {"DATA",10}  BASE");
            foreach (BuildHeader h in await layers.ListAsync(ct))
            {
                string parent = h.BaseBuildId == Guid.Empty ? "-" : h.BaseBuildId.ToString();
                Console.WriteLine($"{h.BuildId,-36}  {h.Generation,3}  {ByteSize.Format(h.Size),10}  {ByteSize.Format(h.DataLength),10}  {parent}");
            }
            return 0;
        });
    }

    private static Command Info()
    {
        var build = new Argument<string>("build") { Description = "Build id or unique prefix." };
        var store = StoreOption();
        var mapping = new Option<bool>("--mapping") { Description = "Also print every mapping extent." };
        var command = new Command("info", "Show a build's header: sizes, generation, parent, and where its blocks live.") { build, store, mapping };
        return command.WithAction(async (parse, ct) =>
        {
            LayerStore layers = OpenStore(parse.GetValue(store)!);
            BuildHeader h = await layers.ReadHeaderAsync(await layers.ResolveAsync(parse.GetValue(build)!, ct), ct);
            Console.WriteLine($"build:       {h.BuildId}");
            Console.WriteLine($"base build:  {(h.BaseBuildId == Guid.Empty ? "-" : h.BaseBuildId)}");
            Console.WriteLine($"generation:  {h.Generation}");
            Console.WriteLine($"size:        {h.Size} ({ByteSize.Format(h.Size)})");
            Console.WriteLine($"block size:  {h.BlockSize}");
            Console.WriteLine($"own data:    {h.DataLength} ({ByteSize.Format(h.DataLength)}), sha256 {Convert.ToHexStringLower(h.DataSha256)}");
            Console.WriteLine($"extents:     {h.Mapping.Count}");
            foreach (var group in h.Mapping.GroupBy(e => e.BuildId))
            {
                string owner = group.Key == Guid.Empty ? "zero" : group.Key.ToString();
                Console.WriteLine($"  {owner,-36}  {ByteSize.Format(group.Sum(e => e.Length)),10}");
            }
            if (parse.GetValue(mapping))
            {
                foreach (BuildMappingEntry e in h.Mapping)
                {
                    Console.WriteLine($"  {e.Offset,14} {e.Length,14}  {(e.IsZero ? "zero" : e.BuildId.ToString())}  {e.StorageOffset}");
                }
            }
            return 0;
        });
    }

    private static Command Verify() => OnBuild("verify", "Check the SHA-256 of every data file a build reads.", async (layers, id, ct) =>
    {
        await layers.VerifyAsync(id, ct);
        Console.WriteLine($"{id}: ok");
    });

    private static Command Delete() => OnBuild("delete", "Delete a build that no other build uses.", async (layers, id, ct) =>
    {
        await layers.DeleteAsync(id, ct);
        await Console.Error.WriteLineAsync($"deleted {id}");
    });

    /// <summary>A command that takes a build (id or unique prefix) and a --store, and does <paramref name="act"/> to it.</summary>
    private static Command OnBuild(string name, string description, Func<LayerStore, Guid, CancellationToken, Task> act)
    {
        var build = new Argument<string>("build") { Description = "Build id or unique prefix." };
        var store = StoreOption();
        var command = new Command(name, description) { build, store };
        return command.WithAction(async (parse, ct) =>
        {
            LayerStore layers = OpenStore(parse.GetValue(store)!);
            await act(layers, await layers.ResolveAsync(parse.GetValue(build)!, ct), ct);
            return 0;
        });
    }

    private static Command Copy()
    {
        var build = new Argument<string>("build") { Description = "Build id or unique prefix (in --from)." };
        var from = new Option<string>("--from") { Description = "The store to copy from (directory or s3://BUCKET/PREFIX).", DefaultValueFactory = _ => VesselSettings.Current.Home.Blocks };
        var to = new Option<string>("--to") { Description = "The store to copy to (directory or s3://BUCKET/PREFIX).", Required = true };
        var command = new Command("copy",
            "Copy a build and every build it reads from one store to another (push to a bucket, pull from one); ids are kept, builds already there are skipped, data is checked on the way.")
        {
            build, from, to,
        };
        return command.WithAction(async (parse, ct) =>
        {
            LayerStore source = OpenStore(parse.GetValue(from)!);
            LayerStore target = OpenStore(parse.GetValue(to)!);
            Guid id = await source.ResolveAsync(parse.GetValue(build)!, ct);
            var sw = Stopwatch.StartNew();
            LayerCopy.Result r = await LayerCopy.CopyAsync(source, target, id, new ConsoleProgress("copying", null), ct);
            await Console.Error.WriteLineAsync(
                $"copied {r.Builds} build(s) ({ByteSize.Format(r.Bytes)} of data) to {target.Storage.Location} in {sw.Elapsed.TotalSeconds:0.00} s; {r.Skipped} already there");
            Console.WriteLine(id);
            return 0;
        });
    }
}

/// <summary>Progress on stderr: a percentage line at most once a second.</summary>
internal sealed class ConsoleProgress(string verb, long? total) : IProgress<long>
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastPrintMs = -1000;

    public void Report(long value)
    {
        long now = _clock.ElapsedMilliseconds;
        if (now - _lastPrintMs < 1000)
        {
            return;
        }
        _lastPrintMs = now;
        string done = total is > 0 ? $"{100.0 * value / total.Value:0}% ({ByteSize.Format(value)} of {ByteSize.Format(total.Value)})" : ByteSize.Format(value);
        Console.Error.WriteLine($"  {verb}: {done}");
    }

}
