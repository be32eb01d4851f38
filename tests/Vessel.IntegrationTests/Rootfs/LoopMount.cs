namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// An ext4 image attached to a loop device and mounted by the kernel (root only). The one
/// owner of both: disposal unmounts, detaches and removes the mount point, and reports a
/// failure of any step instead of swallowing it. <see cref="AssertReleasedAsync"/> checks that
/// neither the mount nor the loop device outlived it.
/// </summary>
internal sealed class LoopMount : IAsyncDisposable
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(60);
    private bool _mounted;
    private bool _attached;

    private LoopMount(string image, string mountPoint, string device) => (Image, MountPoint, Device) = (image, mountPoint, device);

    public string Image { get; }

    public string MountPoint { get; }

    public string Device { get; }

    /// <summary>Attaches <paramref name="image"/> and mounts it at a fresh directory under <paramref name="parent"/>.</summary>
    public static async Task<LoopMount> MountAsync(string image, string parent, bool readOnly, CancellationToken cancellationToken)
    {
        string mountPoint = Path.Combine(parent, "mnt-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(mountPoint);
        List<string> attachArgs = ["--find", "--show"];
        if (readOnly)
        {
            attachArgs.Add("--read-only");
        }
        attachArgs.Add(image);
        ProcessResult attach;
        try
        {
            attach = (await ExternalProcess.RunAsync("losetup", attachArgs, CancellationToken.None, timeout: ToolTimeout)).EnsureSuccess();
        }
        catch
        {
            Directory.Delete(mountPoint);
            throw;
        }
        var mount = new LoopMount(image, mountPoint, attach.StandardOutput.Trim()) { _attached = true };
        try
        {
            // Not cancellable: a mount that half-happened must still be undone by DisposeAsync.
            cancellationToken.ThrowIfCancellationRequested();
            (await ExternalProcess.RunAsync(
                "mount",
                ["-t", "ext4", "-o", readOnly ? "ro" : "rw", mount.Device, mountPoint],
                CancellationToken.None,
                timeout: ToolTimeout)).EnsureSuccess();
            mount._mounted = true;
            return mount;
        }
        catch
        {
            await mount.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        var errors = new List<Exception>();
        if (_mounted)
        {
            try
            {
                (await ExternalProcess.RunAsync("umount", [MountPoint], CancellationToken.None, timeout: ToolTimeout)).EnsureSuccess();
                _mounted = false;
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        }
        if (_attached && !_mounted)
        {
            try
            {
                (await ExternalProcess.RunAsync("losetup", ["-d", Device], CancellationToken.None, timeout: ToolTimeout)).EnsureSuccess();
                _attached = false;
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        }
        if (!_mounted)
        {
            try
            {
                Directory.Delete(MountPoint);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                errors.Add(e);
            }
        }
        if (errors.Count > 0)
        {
            throw new AggregateException($"Releasing the loop mount of {Image} failed", errors);
        }
    }

    /// <summary>Throws when the mount point is still mounted or a loop device still holds the image.</summary>
    public async Task AssertReleasedAsync()
    {
        string mountInfo = await File.ReadAllTextAsync("/proc/self/mountinfo");
        if (mountInfo.Contains(" " + MountPoint + " ", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"{MountPoint} is still mounted");
        }
        var loops = await ExternalProcess.RunAsync("losetup", ["-j", Image], CancellationToken.None, timeout: ToolTimeout);
        if (loops.StandardOutput.Trim().Length > 0)
        {
            throw new InvalidOperationException($"a loop device still holds {Image}: {loops.StandardOutput.Trim()}");
        }
    }
}
