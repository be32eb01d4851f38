namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>
/// Shared by every sandbox test: the guest kit (built once, cached by content hash under the
/// default kit cache, so a CI run builds it once), a busybox rootfs (the tests' own image, <see cref="TestImages"/>) made by Vessel's own
/// rootfs builder, and a private state directory. Disposal checks that nothing outlived the
/// tests: no QEMU process naming the state directory, no sandbox directory.
/// </summary>
public sealed class SandboxEnvironment : IAsyncLifetime
{
    public static readonly string[] Requirements = ["qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo"];

    public static bool Available => Vessel.Testing.Requirements.FirstMissing(Requirements) is null;

    public TempDirectory? Work { get; private set; }

    public GuestKit? Kit { get; private set; }

    public string RootfsPath => Work!.Combine("busybox.ext4");

    public string StateDirectory => Work!.Combine("state");

    public SandboxManager Manager => new(StateDirectory, Kit!);

    public async Task InitializeAsync()
    {
        if (!Available)
        {
            return;
        }
        // Short path: unix socket paths must stay under 108 bytes.
        Work = TempDirectory.Create("vsb-", "/tmp");
        Kit = await new KitBuilder(new KitOptions()).EnsureAsync(CancellationToken.None);
        await using IImageSource image = await ImageSources.OpenAsync(TestImages.BusyboxTarball, new ImageSourceOptions(), CancellationToken.None);
        await RootfsBuilder.BuildAsync(image, RootfsPath, new RootfsBuildOptions { SizeBytes = 256L << 20 }, null, CancellationToken.None);
    }

    /// <summary>QEMU processes whose command line names this environment's state directory.</summary>
    public IReadOnlyList<int> LeftoverQemus() => QemusNaming(StateDirectory);

    /// <summary>QEMU processes whose command line names <paramref name="text"/> (a state directory or home).</summary>
    public static IReadOnlyList<int> QemusNaming(string text) => ProcessTable.QemusNaming(text);

    /// <summary>Asserts that no sandbox left a process or a directory (sockets, rootfs copy, console log) behind.</summary>
    public void AssertNothingLeft() => AssertNothingLeft(StateDirectory);

    /// <summary>Asserts that no sandbox of the home <paramref name="stateDirectory"/> left a QEMU or a directory behind.</summary>
    public static void AssertNothingLeft(string stateDirectory)
    {
        Assert.Empty(QemusNaming(stateDirectory));
        string sandboxes = new VesselHome(stateDirectory).Sandboxes;
        Assert.True(!Directory.Exists(sandboxes) || Directory.GetFileSystemEntries(sandboxes).Length == 0,
            "sandbox directories left: " + (Directory.Exists(sandboxes) ? string.Join(", ", Directory.GetFileSystemEntries(sandboxes)) : string.Empty));
    }

    public Task DisposeAsync()
    {
        Work?.Dispose();
        return Task.CompletedTask;
    }
}

[CollectionDefinition(Name)]
public sealed class SandboxCollection : ICollectionFixture<SandboxEnvironment>
{
    public const string Name = "sandboxes";
}
