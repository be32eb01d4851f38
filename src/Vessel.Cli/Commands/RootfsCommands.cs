using System.CommandLine;
using Spectre.Console;
using Vessel.Common;
using Vessel.Oci;
using Vessel.Rootfs;

namespace Vessel.Cli.Commands;

internal static class RootfsCommands
{
    public static Command Create() => new Command("rootfs", "Build ext4 root filesystems from container images.")
        .WithSubcommands(CreateBuild(), CreateCheck());

    private static Command CreateBuild()
    {
        var source = new Argument<string>("source")
        {
            Description = "The image: an OCI layout dir (oci:DIR[:TAG]), oci-archive:FILE, docker-archive:FILE, a rootfs tarball (.tar/.tar.gz), or a registry reference (docker://HOST/NAME:TAG).",
        };
        var output = new Option<string>("--output", "-o") { Description = "The ext4 image to write (its metadata goes to OUTPUT.json).", Required = true };
        var size = new Option<string?>("--size") { Description = "Fixed image size, e.g. 2G. Default: derived from the content plus --free." };
        var free = new Option<string?>("--free") { Description = "Free space to leave when the size is derived (default 512M)." };
        var reserved = new Option<string?>("--reserved") { Description = "Space reserved for root, as tune2fs -r sets it, e.g. 256M (default 0)." };
        var hostname = new Option<string>("--hostname") { Description = "Hostname written to /etc/hostname and /etc/hosts.", DefaultValueFactory = _ => "vessel" };
        var insecure = new Option<bool>("--insecure") { Description = "Talk plain HTTP to the registry (local registries)." };
        var username = new Option<string?>("--username") { Description = "Registry user; the password comes from VESSEL_REGISTRY_PASSWORD." };
        var command = new Command("build", "Write an image's root filesystem as ext4, in one streaming pass, without root or mounts.")
        {
            source, output, size, free, reserved, hostname, insecure, username,
        };
        return command.WithAction(async (parse, token) =>
        {
            if (parse.GetValue(size) is not null && parse.GetValue(free) is not null)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, "give either --size or --free, not both");
            }
            var options = new RootfsBuildOptions
            {
                SizeBytes = parse.GetValue(size) is string s ? ByteSize.Parse(s) : null,
                FreeBytes = parse.GetValue(free) is string f ? ByteSize.Parse(f) : 512L << 20,
                ReservedBytes = parse.GetValue(reserved) is string r ? ByteSize.Parse(r) : 0,
                Hostname = parse.GetValue(hostname)!,
            };
            string? user = parse.GetValue(username);
            var sourceOptions = new ImageSourceOptions
            {
                Insecure = parse.GetValue(insecure),
                Credentials = user is null ? null : new RegistryCredentials(user, VesselSettings.Current.RegistryPassword ?? string.Empty),
            };
            await using IImageSource image = await ImageSources.OpenAsync(parse.GetValue(source)!, sourceOptions, token);
            RootfsBuildResult result = await BuildWithProgressAsync(image, parse.GetValue(output)!, options, token);
            Print(result);
            return 0;
        });
    }

    private static async Task<RootfsBuildResult> BuildWithProgressAsync(IImageSource image, string output, RootfsBuildOptions options, CancellationToken token)
    {
        if (Console.IsErrorRedirected)
        {
            return await RootfsBuilder.BuildAsync(image, output, options, null, token);
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        RootfsBuildResult? result = null;
        await console.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask($"building {Markup.Escape(image.Description)}", maxValue: 1);
                var progress = new Progress<RootfsProgress>(p =>
                {
                    task.Description = $"layer {p.Layer}/{p.Layers}: {ByteSize.Format(p.LayerBytes)}";
                    task.Value = (p.Layer - 1 + 0.5) / p.Layers;
                });
                result = await RootfsBuilder.BuildAsync(image, output, options, progress, token);
                task.Value = 1;
            });
        return result!;
    }

    private static void Print(RootfsBuildResult r)
    {
        var fs = r.Filesystem;
        double seconds = Math.Max(r.Elapsed.TotalSeconds, 0.001);
        Console.WriteLine($"built {r.Path} from {r.Source}");
        Console.WriteLine($"  image      {r.ManifestDigest ?? r.ContentDigest} ({r.Layers} layer{(r.Layers == 1 ? "" : "s")}, {r.Entries} entries)");
        Console.WriteLine($"  filesystem ext4, {ByteSize.Format(fs.SizeBytes)}, {ByteSize.Format(fs.FreeBlocks * 4096)} free, {fs.Files} files, {fs.Directories} directories, {fs.FreeInodes} free inodes");
        Console.WriteLine($"  wrote      {ByteSize.Format(fs.BytesWritten)} in {seconds:0.000} s ({ByteSize.Format((long)(fs.BytesWritten / seconds))}/s)");
        if (r.Config.Entrypoint is { Count: > 0 } || r.Config.Cmd is { Count: > 0 })
        {
            Console.WriteLine($"  command    {string.Join(' ', (r.Config.Entrypoint ?? []).Concat(r.Config.Cmd ?? []))}");
        }
        Console.WriteLine($"  metadata   {r.Path}.json");
    }

    private static Command CreateCheck()
    {
        var image = new Argument<string>("image") { Description = "An ext4 image file." };
        var command = new Command("check", "Check an ext4 image with e2fsck (read-only) and show its summary.") { image };
        return command.WithAction(async (parse, token) =>
        {
            string path = parse.GetValue(image)!;
            InputFile.Require(path, "image");
            ProcessResult fsck = await ExternalProcess.RunAsync("e2fsck", ["-fn", path], token, timeout: TimeSpan.FromMinutes(30));
            Console.Write(fsck.StandardOutput);
            Console.Error.Write(fsck.StandardError);
            if (fsck.ExitCode != 0)
            {
                Console.Error.WriteLine($"vessel: {path} has errors (e2fsck exit {fsck.ExitCode})");
                return 1;
            }
            Console.WriteLine($"{path}: clean");
            return 0;
        });
    }
}
