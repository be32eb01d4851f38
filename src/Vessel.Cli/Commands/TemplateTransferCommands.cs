using System.CommandLine;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.State;
using Vessel.Templates;

namespace Vessel.Cli.Commands;

/// <summary><c>vessel template push|pull</c>: a built template to and from a bucket (<see cref="TemplateTransfer"/>).</summary>
internal static class TemplateTransferCommands
{
    public static Command Push()
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var to = new Option<string>("--to") { Description = "The bucket: s3://BUCKET/PREFIX (endpoint and keys from VESSEL_S3_*).", Required = true };
        var home = HomeOption.Create();
        var command = new Command("push", "Put a built template in a bucket: its layer chain, its snapshot and a manifest (written last). What the bucket has already is skipped.")
        {
            name, to, home,
        };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async ct =>
        {
            VesselHome dir = HomeOption.GetExisting(parse, home);
            using var bucket = new S3LayerStorage(VesselSettings.Current.S3Store(parse.GetValue(to)!));
            TemplateTransfer transfer = await Open(dir, ct);
            TemplateTransfer.Result r = await transfer.PushAsync(parse.GetValue(name)!, bucket, ct);
            await Console.Error.WriteLineAsync(
                $"pushed '{r.Name}' to {bucket.Location} in {r.Elapsed.TotalSeconds:0.00} s: {r.BuildsCopied} builds ({ByteSize.Format(r.LayerBytes)}), {r.BuildsSkipped} already there; "
                + $"snapshot {ByteSize.Format(r.SnapshotSize)}, {ByteSize.Format(r.SnapshotBytes)} sent");
            return 0;
        }, ct));
        return command;
    }

    public static Command Pull()
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var from = new Option<string>("--from") { Description = "The bucket: s3://BUCKET/PREFIX (endpoint and keys from VESSEL_S3_*).", Required = true };
        var home = HomeOption.Create();
        var command = new Command("pull", "Fetch a template from a bucket into this home: its layers (those missing), its snapshot, then its name. Every chunk and file is checked.")
        {
            name, from, home,
        };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async ct =>
        {
            VesselHome dir = HomeOption.Get(parse, home);
            using var bucket = new S3LayerStorage(VesselSettings.Current.S3Store(parse.GetValue(from)!));
            TemplateTransfer transfer = await Open(dir, ct);
            TemplateTransfer.Result r = await transfer.PullAsync(parse.GetValue(name)!, bucket, ct);
            await Console.Error.WriteLineAsync(
                $"pulled '{r.Name}' from {bucket.Location} in {r.Elapsed.TotalSeconds:0.00} s: {r.BuildsCopied} builds ({ByteSize.Format(r.LayerBytes)}), {r.BuildsSkipped} already here; "
                + $"snapshot {ByteSize.Format(r.SnapshotSize)}, {ByteSize.Format(r.SnapshotBytes)} fetched");
            return 0;
        }, ct));
        return command;
    }

    private static async Task<TemplateTransfer> Open(VesselHome home, CancellationToken ct)
        => new(await StateStore.OpenAsync(home.StateDatabase, ct), LayerStore.OpenDirectory(home.Blocks), home);
}
