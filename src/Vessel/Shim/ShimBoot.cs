using Vessel.Common;
using Vessel.Containerd;
using Vessel.Containerd.Api.Containers;
using Vessel.Guest;

namespace Vessel.Shim;

/// <summary>What a task's VM boots instead of the kit's kernel (and initramfs), and why.</summary>
internal sealed record BootOverride(string KernelPath, string? InitramfsPath, IReadOnlyList<string> KernelParameters, string Summary);

/// <summary>
/// Seed 002 in the shim's Create: when the shim's config enables boot artifacts and the
/// container's image names a kernel (<see cref="BootAnnotations"/>), the files are fetched with
/// <see cref="BootArtifacts"/> (a snapshot view of the image under a lease, files bound
/// read-only into <c>BUNDLE/vessel-boot</c>; or extracted), each step recorded in the bundle
/// before it happens, and the VM boots that kernel. An image initrd goes in front of the kit's
/// initramfs in one file (<c>BUNDLE/vessel-initrd.img</c>: the kernel unpacks concatenated
/// archives in order, so Vessel's /init and modules win over same-named files); the config file
/// holds kernel parameters. Cleanup (<see cref="CleanupAsync"/>) undoes it from the bundle alone.
/// </summary>
internal static class ShimBoot
{
    public const string OutDirectoryName = "vessel-boot";
    public const string InitrdFileName = "vessel-initrd.img";

    /// <summary>The largest boot config accepted (kernel parameters): the command line has room for about 2 KiB in all.</summary>
    public const int MaxConfigBytes = 1024;

    /// <summary>The VM's boot override, or null when boot artifacts are off, the container has no image, or its image names no kernel.</summary>
    public static async Task<BootOverride?> PrepareAsync(ShimConfig config, string address, string ns, string id, string bundle, GuestKit kit, CancellationToken cancellationToken)
    {
        if (!config.BootArtifacts)
        {
            return null;
        }
        Container container;
        ContainerdImage image;
        using (var client = new ContainerdClient(address, ns))
        {
            container = await client.GetContainerAsync(id, cancellationToken);
            if (container.Image.Length == 0)
            {
                return null;
            }
            image = await ContainerdImage.ResolveAsync(client, container.Image, cancellationToken);
        }
        BootAnnotations? wanted = BootAnnotations.Find(image.Labels, BootAnnotations.SpecAnnotations(bundle), image.Name);
        if (wanted is null)
        {
            return null;
        }
        ArtifactResult fetched = await BootArtifacts.PrepareAsync(new ArtifactRequest
        {
            Address = address,
            Namespace = ns,
            Image = container.Image,
            Files = wanted.Files,
            Bundle = bundle,
            OutDirectory = Path.Combine(bundle, OutDirectoryName),
            Mode = config.BootArtifactMode,
            Snapshotter = container.Snapshotter.Length > 0 ? container.Snapshotter : ContainerdClient.DefaultSnapshotter,
        }, cancellationToken);
        string Target(string path) => fetched.Files.Single(f => f.Path == path).Target;

        string? initramfs = null;
        if (wanted.Initrd is { } initrd)
        {
            initramfs = Path.Combine(bundle, InitrdFileName);
            await CombineInitrdAsync(Target(initrd), kit.InitramfsPath, initramfs, cancellationToken);
        }
        IReadOnlyList<string> parameters = wanted.Config is { } configFile ? ReadParameters(Target(configFile), configFile, image.Name) : [];
        string how = fetched.Mode == ArtifactMode.View ? $"view {fetched.ViewKey} under lease {fetched.LeaseId}" : $"extracted{(fetched.FallbackReason is { } r ? $" (view unavailable: {r})" : string.Empty)}";
        return new BootOverride(Target(wanted.Kernel), initramfs, parameters,
            $"boot artifacts of {image.Name}: kernel {wanted.Kernel}{(wanted.Initrd is { } i ? $", initrd {i}" : string.Empty)}{(wanted.Config is { } c ? $", config {c}" : string.Empty)}, {how}");
    }

    /// <summary>Releases what <see cref="PrepareAsync"/> made for <paramref name="bundle"/> (binds, view mount, view, lease, the combined initrd); idempotent.</summary>
    public static async Task CleanupAsync(string bundle, CancellationToken cancellationToken)
    {
        if (Directory.Exists(bundle))
        {
            await BootArtifacts.CleanupAsync(bundle, addressOverride: null, cancellationToken);
        }
        File.Delete(Path.Combine(bundle, InitrdFileName));
    }

    /// <summary>The image's initrd, zero-padded to 4 bytes (a cpio header starts 4-aligned), then the kit's initramfs.</summary>
    private static async Task CombineInitrdAsync(string imageInitrd, string kitInitramfs, string target, CancellationToken cancellationToken)
    {
        using OutputFile output = OutputFile.Begin(target, "combined initrd");
        await using (var stream = new FileStream(output.PartialPath, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            await using (FileStream first = File.OpenRead(imageInitrd))
            {
                await first.CopyToAsync(stream, cancellationToken);
            }
            stream.Write(new byte[(4 - (int)(stream.Length % 4)) % 4]);
            await using (FileStream kitPart = File.OpenRead(kitInitramfs))
            {
                await kitPart.CopyToAsync(stream, cancellationToken);
            }
        }
        output.Commit();
    }

    /// <summary>
    /// The boot config's kernel parameters: whitespace-separated, printable ASCII, at most
    /// <see cref="MaxConfigBytes"/>; none may take over Vessel's boot (<c>vessel.*</c>, <c>init=</c>, <c>rdinit=</c>).
    /// </summary>
    public static IReadOnlyList<string> ReadParameters(string file, string pathInImage, string imageName)
    {
        var info = new FileInfo(file);
        string what = $"boot config {pathInImage} of image '{imageName}'";
        if (info.Length > MaxConfigBytes)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"The {what} is {info.Length} bytes; kernel parameters fit in {MaxConfigBytes}.");
        }
        string text = File.ReadAllText(file);
        var parameters = text.Split([' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
        foreach (string p in parameters)
        {
            if (p.Any(c => c is < '!' or > '~' or '"'))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"The {what} has a parameter with a character a kernel command line cannot carry: '{p}'.");
            }
            if (p.StartsWith("vessel.", StringComparison.Ordinal) || p.StartsWith("init=", StringComparison.Ordinal) || p.StartsWith("rdinit=", StringComparison.Ordinal))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"The {what} sets '{p}', which Vessel's boot owns (vessel.*, init=, rdinit=).");
            }
        }
        return parameters;
    }
}
