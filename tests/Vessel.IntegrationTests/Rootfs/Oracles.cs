namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// Independent answers to "what do the layers say after OCI rules": umoci applies an OCI
/// image's layers (whiteouts, opaque directories, hard links) into a bundle, and GNU tar
/// extracts a plain rootfs tarball. Both run as root so owners, devices and xattrs are real.
/// </summary>
internal static class Oracles
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(5);

    /// <summary>Runs a tool and throws with its stderr when it fails.</summary>
    public static async Task<ProcessResult> RunToolAsync(string tool, IEnumerable<string> args, CancellationToken cancellationToken)
        => (await ExternalProcess.RunAsync(tool, args, cancellationToken, timeout: ToolTimeout)).EnsureSuccess();

    /// <summary><c>umoci unpack --image LAYOUT:TAG BUNDLE</c>; returns BUNDLE/rootfs.</summary>
    public static async Task<string> UmociUnpackAsync(string layout, string tag, string bundle, CancellationToken cancellationToken)
    {
        await RunToolAsync("umoci", ["unpack", "--image", $"{layout}:{tag}", bundle], cancellationToken);
        return Path.Combine(bundle, "rootfs");
    }

    /// <summary><c>tar --xattrs --xattrs-include='*' --numeric-owner -xpf TARBALL -C DIR</c>.</summary>
    public static async Task<string> TarExtractAsync(string tarball, string directory, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(directory);
        await RunToolAsync(
            "tar",
            ["--xattrs", "--xattrs-include=*", "--numeric-owner", "--same-owner", "-xpf", tarball, "-C", directory],
            cancellationToken);
        return directory;
    }
}
