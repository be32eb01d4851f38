namespace Vessel.Tests.Rootfs;

/// <summary>A rootfs tarball found again in the cache by its file's identity, without reading it (issue 15: cached start must not grow with image size).</summary>
public sealed class RootfsCacheKeyTests : IDisposable
{
    private static readonly TimeSpan s_settled = TimeSpan.FromHours(1);
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-rootfs-key-");

    public void Dispose() => _dir.Dispose();

    private RootfsCache Cache(TimeProvider? time = null) =>
        new(_dir.Combine("images"), new RootfsBuildOptions { Provision = false, FreeBytes = 4 << 20 }, time);

    private string WriteTarball(string motd)
    {
        string path = _dir.Combine("rootfs.tar");
        File.WriteAllBytes(path, LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/motd", motd)));
        return path;
    }

    private static async Task<(RootfsCacheEntry Entry, long BytesRead)> EnsureAsync(RootfsCache cache, string tarball)
    {
        await using IImageSource source = await ImageSources.OpenAsync(tarball, ImageSourceOptions.Default, CancellationToken.None);
        var file = Assert.IsType<RootfsTarballImageSource>(source);
        RootfsCacheEntry entry = await cache.EnsureAsync(source, CancellationToken.None);
        return (entry, file.BytesRead);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_tarball_seen_before_is_found_by_its_identity_without_being_read()
    {
        string tarball = WriteTarball("one\n");
        long size = new FileInfo(tarball).Length;
        RootfsCache cache = Cache(new LaterClock(s_settled));

        (RootfsCacheEntry first, long firstRead) = await EnsureAsync(cache, tarball);
        Assert.True(first.Built);
        Assert.True(firstRead >= size, $"the first start read {firstRead} of {size} bytes");
        Assert.Single(Directory.GetFiles(cache.Directory, "*" + RootfsCache.KeyFile));

        (RootfsCacheEntry again, long againRead) = await EnsureAsync(cache, tarball);
        Assert.False(again.Built);
        Assert.Equal(0, againRead);
        Assert.Equal(first.Path, again.Path);
        Assert.Equal(first.ContentDigest, again.ContentDigest);
        Assert.Empty(cache.StaleKeys());
    }

    [Fact(Timeout = 120_000)]
    public async Task A_tarball_rewritten_with_the_same_size_and_mtime_is_read_again_and_built_anew()
    {
        string tarball = WriteTarball("one\n");
        RootfsCache cache = Cache(new LaterClock(s_settled));
        (RootfsCacheEntry first, _) = await EnsureAsync(cache, tarball);
        DateTime mtime = File.GetLastWriteTimeUtc(tarball);
        long size = new FileInfo(tarball).Length;
        await Task.Delay(50); // past the kernel's coarse timestamp step, as any real rewrite is

        // Same length, other content, in place (same inode), and the modification time set back.
        await using (var f = new FileStream(tarball, FileMode.Open, FileAccess.Write))
        {
            f.Write(LayersImageSource.Tar(w => LayersImageSource.File(w, "etc/motd", "two\n")));
        }
        File.SetLastWriteTimeUtc(tarball, mtime);
        Assert.Equal(size, new FileInfo(tarball).Length);
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(tarball));

        (RootfsCacheEntry second, long read) = await EnsureAsync(cache, tarball);
        Assert.True(second.Built);
        Assert.NotEqual(first.ContentDigest, second.ContentDigest);
        Assert.True(read >= size, $"the changed tarball was read {read} of {size} bytes");
    }

    [Fact(Timeout = 120_000)]
    public async Task A_tarball_changed_a_moment_ago_is_not_remembered_by_its_identity()
    {
        string tarball = WriteTarball("fresh\n");
        RootfsCache cache = Cache(); // the real clock: the file's change time is within the settle time
        (RootfsCacheEntry first, _) = await EnsureAsync(cache, tarball);
        Assert.Empty(Directory.GetFiles(cache.Directory, "*" + RootfsCache.KeyFile));

        (RootfsCacheEntry again, long read) = await EnsureAsync(cache, tarball);
        Assert.False(again.Built);
        Assert.Equal(first.Path, again.Path);
        Assert.True(read > 0, "without a key the tarball is hashed to find its entry");
    }

    [Fact(Timeout = 120_000)]
    public async Task A_key_whose_entry_was_removed_is_stale_and_leads_to_a_rebuild()
    {
        string tarball = WriteTarball("gone\n");
        RootfsCache cache = Cache(new LaterClock(s_settled));
        (RootfsCacheEntry first, _) = await EnsureAsync(cache, tarball);
        File.Delete(first.Path);
        File.Delete(RootfsBuilder.MetadataPath(first.Path));
        Assert.Single(cache.StaleKeys());

        (RootfsCacheEntry again, long read) = await EnsureAsync(cache, tarball);
        Assert.True(again.Built);
        Assert.Equal(first.ContentDigest, again.ContentDigest);
        Assert.True(read > 0);
        Assert.Empty(cache.StaleKeys());
    }
}
