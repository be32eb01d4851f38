using Vessel.IntegrationTests.Templates;

namespace Vessel.IntegrationTests.Sandboxes;

/// <summary>
/// What the VM test environments share: a private work directory, the guest kit (built once,
/// cached by content hash under the default kit cache, so a CI run builds it once), a busybox
/// rootfs made by Vessel's own rootfs builder, and a state directory whose leftovers the tests
/// check. Where a requirement is missing it builds nothing (the tests skip, or fail under CI).
/// </summary>
public abstract class VmTestEnvironment : IAsyncLifetime
{
    private readonly IReadOnlyList<string> _requirements;
    private readonly string _prefix;
    private readonly long _rootfsSize;

    /// <param name="requirements">What the environment needs (the collection's tests name the same).</param>
    /// <param name="prefix">The work directory's name prefix, under /tmp: unix socket paths must stay under 108 bytes.</param>
    /// <param name="rootfsSize">The busybox rootfs's size in bytes.</param>
    private protected VmTestEnvironment(IReadOnlyList<string> requirements, string prefix, long rootfsSize)
    {
        _requirements = requirements;
        _prefix = prefix;
        _rootfsSize = rootfsSize;
    }

    public TempDirectory? Work { get; private set; }

    public GuestKit? Kit { get; private set; }

    public string RootfsPath => Work!.Combine("busybox.ext4");

    public string StateDirectory => Work!.Combine("state");

    public SandboxManager Manager => new(StateDirectory, Kit!);

    /// <summary>Template home <paramref name="name"/> in the state directory (its VMs are seen by <see cref="AssertNothingLeft()"/>).</summary>
    internal Task<TemplateHome> OpenTemplateHomeAsync(string name, CancellationToken ct) => TemplateHome.OpenAsync(StateDirectory, name, Kit!, ct);

    /// <summary>Asserts that no sandbox left a process or a directory (sockets, rootfs copy, console log) behind.</summary>
    public void AssertNothingLeft() => SandboxEnvironment.AssertNothingLeft(StateDirectory);

    public async Task InitializeAsync()
    {
        if (Vessel.Testing.Requirements.FirstMissing(_requirements) is not null)
        {
            return;
        }
        Work = TempDirectory.Create(_prefix, "/tmp");
        Kit = await new KitBuilder(new KitOptions()).EnsureAsync(CancellationToken.None);
        await using IImageSource image = await OpenImageAsync(Work);
        await RootfsBuilder.BuildAsync(image, RootfsPath, new RootfsBuildOptions { SizeBytes = _rootfsSize }, null, CancellationToken.None);
    }

    /// <summary>The busybox image the rootfs is built from (made under <paramref name="work"/> where it is made here).</summary>
    private protected abstract Task<IImageSource> OpenImageAsync(TempDirectory work);

    public Task DisposeAsync()
    {
        Work?.Dispose();
        return Task.CompletedTask;
    }
}
