using Vessel.IntegrationTests.Sandboxes;

namespace Vessel.IntegrationTests.Guest;

/// <summary>
/// For the guest kit tests: the kit (cached by content hash under the default kit cache), a tiny
/// OCI image made here from Debian's busybox-static with umoci (nothing from outside the
/// repository), its rootfs, and a private state directory whose leftovers disposal checks.
/// </summary>
public sealed class GuestKitEnvironment() : VmTestEnvironment(Requirements, "vgk-", 64L << 20)
{
    public static readonly string[] Requirements = ["qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs"];

    /// <summary>The OCI layout of the busybox image, as an image reference ("oci:DIR:busybox").</summary>
    public string ImageReference => "oci:" + Work!.Combine("oci") + ":busybox";

    private protected override async Task<IImageSource> OpenImageAsync(TempDirectory work)
    {
        await MakeBusyboxImageAsync(work.Combine("oci"), work.Combine("bundle"));
        return await ImageSources.OpenAsync(ImageReference, new ImageSourceOptions(), CancellationToken.None);
    }

    /// <summary>An OCI image with Debian's static busybox and its applets as symlinks (what scripts/demo.sh makes).</summary>
    private static async Task MakeBusyboxImageAsync(string layout, string bundle)
    {
        async Task Umoci(params string[] args) => (await ExternalProcess.RunAsync("umoci", args, CancellationToken.None, timeout: TimeSpan.FromMinutes(2))).EnsureSuccess();
        await Umoci("init", "--layout", layout);
        await Umoci("new", "--image", layout + ":busybox");
        await Umoci("unpack", "--rootless", "--image", layout + ":busybox", bundle);
        string rootfs = Path.Combine(bundle, "rootfs");
        foreach (string d in new[] { "bin", "root", "tmp", "etc" })
        {
            Directory.CreateDirectory(Path.Combine(rootfs, d));
        }
        File.Copy("/bin/busybox", Path.Combine(rootfs, "bin", "busybox"));
        foreach (string applet in new[] { "sh", "ls", "cat", "echo", "date", "sleep", "free", "test", "mkdir", "rm", "true", "awk", "sync" })
        {
            File.CreateSymbolicLink(Path.Combine(rootfs, "bin", applet), "busybox");
        }
        await Umoci("repack", "--image", layout + ":busybox", bundle);
        await Umoci("config", "--image", layout + ":busybox", "--config.cmd", "/bin/sh", "--config.env", "PATH=/bin", "--config.workingdir", "/root");
    }

    /// <summary>QEMU processes whose command line names <paramref name="directory"/>.</summary>
    public static IReadOnlyList<int> QemusNaming(string directory) => SandboxEnvironment.QemusNaming(directory);

}

[CollectionDefinition(Name)]
public sealed class GuestKitCollection : ICollectionFixture<GuestKitEnvironment>
{
    public const string Name = "guest-kit";
}
