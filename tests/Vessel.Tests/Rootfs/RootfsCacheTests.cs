namespace Vessel.Tests.Rootfs;

public sealed class RootfsCacheTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-rootfs-cache-");

    public void Dispose() => _dir.Dispose();

    private static LayersImageSource Image(string text) =>
        new("cache-test", LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/motd", text)));

    [RequiresFact("busybox", "e2fsck", Timeout = 120_000)]
    public async Task The_same_image_is_built_once_and_found_by_its_content_digest_afterwards()
    {
        var cache = new RootfsCache(_dir.Combine("rootfs"), new RootfsBuildOptions { FreeBytes = 4 << 20 });
        RootfsCacheEntry first = await cache.EnsureAsync(Image("one\n"), CancellationToken.None);
        Assert.True(first.Built);
        Assert.Null(await E2fs.CheckAsync(first.Path));
        var identity = (new FileInfo(first.Path).LastWriteTimeUtc, new FileInfo(first.Path).Length);

        RootfsCacheEntry again = await cache.EnsureAsync(Image("one\n"), CancellationToken.None);
        Assert.False(again.Built);
        Assert.Equal(first.Path, again.Path);
        Assert.Equal(first.ContentDigest, again.ContentDigest);
        Assert.Equal(identity, (new FileInfo(again.Path).LastWriteTimeUtc, new FileInfo(again.Path).Length));

        RootfsCacheEntry other = await cache.EnsureAsync(Image("two\n"), CancellationToken.None);
        Assert.True(other.Built);
        Assert.NotEqual(first.Path, other.Path);
    }

    [RequiresFact("busybox", Timeout = 120_000)]
    public async Task Concurrent_runs_for_one_image_build_it_once()
    {
        string dir = _dir.Combine("rootfs");
        RootfsCacheEntry[] entries = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ =>
            Task.Run(() => new RootfsCache(dir, new RootfsBuildOptions { FreeBytes = 4 << 20 }).EnsureAsync(Image("same\n"), CancellationToken.None))));
        Assert.Single(entries, e => e.Built);
        Assert.Single(entries.Select(e => e.Path).Distinct());
        Assert.Empty(Directory.GetFiles(dir, "*.partial"));
        Assert.Single(Directory.GetFiles(dir, "*.ext4"));
    }

    [RequiresFact("busybox", Timeout = 120_000)]
    public async Task Build_options_are_part_of_the_name()
    {
        string dir = _dir.Combine("rootfs");
        RootfsCacheEntry small = await new RootfsCache(dir, new RootfsBuildOptions { FreeBytes = 4 << 20 }).EnsureAsync(Image("x\n"), CancellationToken.None);
        RootfsCacheEntry large = await new RootfsCache(dir, new RootfsBuildOptions { FreeBytes = 8 << 20 }).EnsureAsync(Image("x\n"), CancellationToken.None);
        Assert.True(large.Built);
        Assert.NotEqual(small.Path, large.Path);
    }
}
