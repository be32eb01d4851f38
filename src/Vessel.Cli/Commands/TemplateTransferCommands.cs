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
        (t, name, bucket, _, ct) => t.PushAsync(name, bucket, ct), "to", "already there", "sent", lazy: null);

    public static Command Pull() => Create("pull", "--from",
        "Fetch a template from a bucket into this home: its layers (those missing), its snapshot, then its name. Every chunk and file is checked.",
        (t, name, bucket, lazy, ct) => t.PullAsync(name, bucket, lazy, ct), "from", "already here", "fetched",
        new Option<bool>("--lazy")
        {
            Description = "Leave the layers in the bucket: sandboxes read them chunk by chunk as they start (needs VESSEL_REMOTE_STORE set to the same bucket for every command on this home). The snapshot is still fetched.",
        });

    private static Command Create(string verb, string bucketOption, string description,
        Func<TemplateTransfer, string, S3LayerStorage, bool, CancellationToken, Task<TemplateTransfer.Result>> move, string preposition, string present, string moved,
        Option<bool>? lazy)
    {
        var name = new Argument<string>("name") { Description = "Template name." };
        var bucketUrl = new Option<string>(bucketOption) { Description = "The bucket: s3://BUCKET/PREFIX (endpoint and keys from VESSEL_S3_*).", Required = true };
        var home = HomeOption.Create();
        var command = new Command(verb, description) { name, bucketUrl, home };
        if (lazy is not null)
        {
            command.Options.Add(lazy);
        }
        return command.WithAction(async (parse, ct) =>
        {
            // A push reads an existing home; a pull may be the first thing a new home gets.
            VesselHome dir = verb == "push" ? HomeOption.GetExisting(parse, home) : HomeOption.Get(parse, home);
            string url = parse.GetValue(bucketUrl)!;
            bool isLazy = lazy is not null && parse.GetValue(lazy);
            if (isLazy && (VesselSettings.Current.RemoteStore is not { } remote || S3StoreOptions.Parse(remote) != S3StoreOptions.Parse(url)))
            {
                throw new VesselException(VesselErrorReason.InvalidInput,
                    $"--lazy leaves the layers in {url}, read when sandboxes start: set VESSEL_REMOTE_STORE={url} for every vessel command on this home (it is '{VesselSettings.Current.RemoteStore}').");
            }
            using var bucket = new S3LayerStorage(VesselSettings.Current.S3Store(url, dir));
            var transfer = new TemplateTransfer(await StateStore.OpenAsync(VesselSettings.Current.StateLocation(dir), ct), LayerStore.OpenDirectory(dir.Blocks), dir);
            TemplateTransfer.Result r = await move(transfer, parse.GetValue(name)!, bucket, isLazy, ct);
            await Console.Error.WriteLineAsync(
                $"{verb}ed '{r.Name}' {preposition} {bucket.Location} in {r.Elapsed.TotalSeconds:0.00} s: {r.BuildsCopied} builds ({ByteSize.Format(r.LayerBytes)}), {r.BuildsSkipped} {present}; "
                + $"snapshot {ByteSize.Format(r.SnapshotSize)}, {ByteSize.Format(r.SnapshotBytes)} {moved}");
            return 0;
        });
    }
}
