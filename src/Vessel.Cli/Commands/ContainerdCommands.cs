using System.CommandLine;
using Vessel.Common;
using Vessel.Containerd;

namespace Vessel.Cli.Commands;

internal static class ContainerdCommands
{
    public static Command Create() => new Command("containerd", "Boot artifacts (kernel, initrd, config) from container images in containerd.")
        .WithSubcommands(CreateArtifacts(), CreateCleanup());

    private static Command CreateArtifacts()
    {
        var address = new Option<string>("--address")
        {
            Description = "containerd's gRPC socket.",
            DefaultValueFactory = _ => "/run/containerd/containerd.sock",
        };
        var ns = new Option<string>("--namespace", "-n")
        {
            Description = "containerd namespace of the image.",
            DefaultValueFactory = _ => "default",
        };
        var image = new Option<string>("--image") { Description = "Image reference as containerd stores it (short docker names are normalized).", Required = true };
        var files = new Option<string[]>("--file")
        {
            Description = "Path of a file inside the image (repeat for several); it appears at OUT/<path>.",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var bundle = new Option<string>("--bundle") { Description = "The container's bundle directory: holds the view's state and mount point.", Required = true };
        var output = new Option<string>("--out") { Description = "Directory where the files appear (read-only bind mounts, or copies when extracting).", Required = true };
        var mode = new Option<string?>("--mode")
        {
            Description = "view: a read-only snapshot view held by a lease; extract: copy the files out of the layers. "
                + $"Default: view when enabled by the bundle's '{BootArtifacts.ViewAnnotation}' annotation or {VesselSettings.ContainerdSnapshotViewVariable}=1, else extract.",
        };
        mode.AcceptOnlyFromAmong("view", "extract");
        var snapshotter = new Option<string>("--snapshotter")
        {
            Description = "Snapshotter that unpacked the image.",
            DefaultValueFactory = _ => ContainerdClient.DefaultSnapshotter,
        };
        var expiry = new Option<string>("--lease-expiry")
        {
            Description = "How long containerd keeps the lease if cleanup never runs (e.g. 30m, 24h, 7d).",
            DefaultValueFactory = _ => "24h",
        };
        var noFallback = new Option<bool>("--no-fallback") { Description = "Fail instead of extracting when the view cannot be made." };

        var command = new Command("artifacts",
            "Expose files of a container image (kernel, initrd, config) in --out, through a snapshot view or by extraction. "
            + "Undo with 'vessel containerd cleanup --bundle DIR'.")
        {
            address, ns, image, files, bundle, output, mode, snapshotter, expiry, noFallback,
        };
        return command.WithAction(async (parseResult, ct) =>
        {
            // Test seam: a step name (state, lease, view, mount, bind) at which `artifacts` stops
            // and waits to be killed, so tests can crash it exactly there.
            string? hold = VesselSettings.Current.ContainerdTestHold;
            var request = new ArtifactRequest
            {
                Address = parseResult.GetValue(address)!,
                Namespace = parseResult.GetValue(ns)!,
                Image = parseResult.GetValue(image)!,
                Files = parseResult.GetValue(files) ?? [],
                Bundle = parseResult.GetValue(bundle)!,
                OutDirectory = parseResult.GetValue(output)!,
                Mode = parseResult.GetValue(mode) switch
                {
                    "view" => ArtifactMode.View,
                    "extract" => ArtifactMode.Extract,
                    _ => null,
                },
                Snapshotter = parseResult.GetValue(snapshotter)!,
                LeaseExpiry = ParseDuration(parseResult.GetValue(expiry)!),
                AllowFallback = !parseResult.GetValue(noFallback),
                Progress = new StderrProgress(),
                StepHook = hold is null ? null : async (step, token) =>
                {
                    if (step == hold)
                    {
                        await Console.Error.WriteLineAsync($"vessel: test hold after step '{step}'");
                        await Task.Delay(Timeout.Infinite, token);
                    }
                },
            };
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            ArtifactResult result = await BootArtifacts.PrepareAsync(request, ct);
            await Console.Error.WriteLineAsync(
                $"vessel: artifacts ready in {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:0} ms");
            string how = result.Mode == ArtifactMode.View
                ? $"view (snapshot view {result.ViewKey}, lease {result.LeaseId})"
                : result.FallbackReason is null ? "extract" : $"extract (view unavailable: {result.FallbackReason})";
            Console.WriteLine($"artifacts: {how}{(result.Resumed ? ", already prepared" : string.Empty)}");
            foreach (FileRecord file in result.Files)
            {
                Console.WriteLine($"{file.Path} -> {file.Target}");
            }
            return 0;
        });
    }

    private static Command CreateCleanup()
    {
        var bundle = new Option<string>("--bundle") { Description = "The bundle given to 'artifacts'.", Required = true };
        var address = new Option<string?>("--address") { Description = "containerd's socket, if it moved since 'artifacts' (default: the one recorded in the bundle)." };
        var command = new Command("cleanup",
            "Undo 'artifacts' for a bundle: unmount the binds, then the view, remove the view and the lease, delete the files it made. Safe to run twice and after a crash.")
        {
            bundle, address,
        };
        return command.WithAction(async (parseResult, ct) =>
        {
            CleanupResult result = await BootArtifacts.CleanupAsync(parseResult.GetValue(bundle)!, parseResult.GetValue(address), ct);
            if (!result.HadState)
            {
                Console.WriteLine("cleanup: nothing to clean");
            }
            else
            {
                Console.WriteLine($"cleanup: removed {result.Removed.Count} item(s)");
                foreach (string item in result.Removed)
                {
                    Console.WriteLine($"  {item}");
                }
            }
            foreach (string warning in result.Warnings)
            {
                await Console.Error.WriteLineAsync($"vessel: warning: {warning}");
            }
            return 0;
        });
    }

    private static TimeSpan ParseDuration(string text)
    {
        string t = text.Trim();
        if (t.Length >= 2 && long.TryParse(t[..^1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) && n > 0)
        {
            switch (t[^1])
            {
                case 's': return TimeSpan.FromSeconds(n);
                case 'm': return TimeSpan.FromMinutes(n);
                case 'h': return TimeSpan.FromHours(n);
                case 'd': return TimeSpan.FromDays(n);
            }
        }
        throw new VesselException(VesselErrorReason.InvalidInput, $"--lease-expiry '{text}' is not a duration: use a number with s, m, h or d (e.g. 24h).");
    }

    /// <summary>Progress lines on stderr, written as they happen (Progress&lt;T&gt; would post them later).</summary>
    private sealed class StderrProgress : IProgress<string>
    {
        public void Report(string value) => Console.Error.WriteLine(value);
    }
}
