using System.CommandLine;
using Vessel.Blocks;
using Vessel.Common;
using Vessel.State;
using Vessel.Templates;

namespace Vessel.Cli.Commands;

/// <summary><c>vessel template push|pull</c>: a built template to and from a bucket (<see cref="TemplateTransfer"/>).</summary>
internal static class TemplateTransferCommands
{
    public static Command Push() => Create("push", "--to",
        "Put a built template in a bucket: its layer chain, its snapshot and a manifest (written last). What the bucket has already is skipped.",
        (t, name, bucket, ct) => t.PushAsync(name, bucket, ct), "to", "already there", "sent");

    public static Command Pull() => Create("pull", "--from",
        "Fetch a template from a bucket into this home: its layers (those missing), its snapshot, then its name. Every chunk and file is checked.",
        (t, name, bucket, ct) => t.PullAsync(name, bucket, ct), "from", "already here", "fetched");

    private static Command Create(string verb, string bucketOption, string description,
        Func<TemplateTransfer, string, S3LayerStorage, CancellationToken, Task<TemplateTransfer.Result>> move, string preposition, string present, string moved)
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var bucketUrl = new Option<string>(bucketOption) { Description = "The bucket: s3://BUCKET/PREFIX (endpoint and keys from VESSEL_S3_*).", Required = true };
        var home = HomeOption.Create();
        var command = new Command(verb, description) { name, bucketUrl, home };
        command.SetAction((parse, ct) => CliRunner.RunAsync(async ct =>
        {
            // A push reads an existing home; a pull may be the first thing a new home gets.
            VesselHome dir = verb == "push" ? HomeOption.GetExisting(parse, home) : HomeOption.Get(parse, home);
            using var bucket = new S3LayerStorage(VesselSettings.Current.S3Store(parse.GetValue(bucketUrl)!));
            var transfer = new TemplateTransfer(await StateStore.OpenAsync(dir.StateDatabase, ct), LayerStore.OpenDirectory(dir.Blocks), dir);
            TemplateTransfer.Result r = await move(transfer, parse.GetValue(name)!, bucket, ct);
            await Console.Error.WriteLineAsync(
                $"{verb}ed '{r.Name}' {preposition} {bucket.Location} in {r.Elapsed.TotalSeconds:0.00} s: {r.BuildsCopied} builds ({ByteSize.Format(r.LayerBytes)}), {r.BuildsSkipped} {present}; "
                + $"snapshot {ByteSize.Format(r.SnapshotSize)}, {ByteSize.Format(r.SnapshotBytes)} {moved}");
            return 0;
        }, ct));
        return command;
    }
}
