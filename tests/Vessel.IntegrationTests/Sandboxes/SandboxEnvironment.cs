namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>
/// Shared by every sandbox test: the guest kit (built once, cached by content hash under the
/// default kit cache, so a CI run builds it once), a busybox rootfs (the tests' own image, <see cref="TestImages"/>) made by Vessel's own
/// rootfs builder, and a private state directory. Disposal checks that nothing outlived the
/// tests: no QEMU process naming the state directory, no sandbox directory.
/// </summary>
public sealed class SandboxEnvironment() : VmTestEnvironment(Requirements, "vsb-", 256L << 20)
{
    public static readonly string[] Requirements = ["qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo"];

    public static bool Available => Vessel.Testing.Requirements.FirstMissing(Requirements) is null;

    private protected override async Task<IImageSource> OpenImageAsync(TempDirectory work)
        => await ImageSources.OpenAsync(TestImages.BusyboxTarball, new ImageSourceOptions(), CancellationToken.None);

    /// <summary>QEMU processes whose command line names this environment's state directory.</summary>
    public IReadOnlyList<int> LeftoverQemus() => QemusNaming(StateDirectory);

    /// <summary>QEMU processes whose command line names <paramref name="text"/> (a state directory or home).</summary>
    public static IReadOnlyList<int> QemusNaming(string text) => ProcessTable.QemusNaming(text);

    /// <summary>Asserts that no sandbox of the home <paramref name="stateDirectory"/> left a QEMU or a directory behind.</summary>
    public static void AssertNothingLeft(string stateDirectory)
    {
        Assert.Empty(QemusNaming(stateDirectory));
        string sandboxes = new VesselHome(stateDirectory).Sandboxes;
        Assert.True(!Directory.Exists(sandboxes) || Directory.GetFileSystemEntries(sandboxes).Length == 0,
            "sandbox directories left: " + (Directory.Exists(sandboxes) ? string.Join(", ", Directory.GetFileSystemEntries(sandboxes)) : string.Empty));
    }
}

[CollectionDefinition(Name)]
public sealed class SandboxCollection : ICollectionFixture<SandboxEnvironment>
{
    public const string Name = "sandboxes";
}
