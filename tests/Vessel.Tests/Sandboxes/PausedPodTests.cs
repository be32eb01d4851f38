namespace Vessel.Tests.Sandboxes;

public sealed class PausedPodTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vpod-").FullName;

    private string Images => Path.Combine(_dir, "images");

    private string Snapshot => Path.Combine(_dir, "snapshot");

    public PausedPodTests()
    {
        Directory.CreateDirectory(Images);
        Directory.CreateDirectory(Snapshot);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private PodInfo Pod(string lowerPath) => new(
        new PodSpec([new PodContainerSpec("web", "oci:/img:1") { Command = ["sh", "-c", "sleep 1d"], Env = new Dictionary<string, string> { ["A"] = "b" }, Cwd = "/srv", User = "1000" }])
        {
            Rootfs = PodRootfsMode.Block,
            MemoryMiB = 384,
            UpperMiB = 32,
        },
        [new PodContainer("web", "oci:/img:1", "sha256:" + new string('a', 64), "aaaaaaaaaaaaaaaaaa", 42)])
    {
        Lowers = [new PodLower("aaaaaaaaaaaaaaaaaa", lowerPath, "sha256:" + new string('a', 64), ImageConfig.Empty, Built: true)],
    };

    [Fact]
    public async Task A_pod_written_beside_its_snapshot_reads_back_with_its_spec_containers_and_disks()
    {
        string lower = Path.Combine(Images, "a.ext4");
        await PausedPod.WriteAsync(Snapshot, Pod(lower), CancellationToken.None);
        PodInfo read = Assert.IsType<PodInfo>(await PausedPod.ReadAsync(Snapshot, Images, CancellationToken.None));
        PodContainerSpec c = Assert.Single(read.Spec.Containers);
        Assert.Equal(["sh", "-c", "sleep 1d"], c.Command);
        Assert.Equal("b", c.Env!["A"]);
        Assert.Equal(("/srv", "1000"), (c.Cwd, c.User));
        Assert.Equal((384, 32, PodRootfsMode.Block), (read.Spec.MemoryMiB, read.Spec.UpperMiB, read.Spec.Rootfs));
        Assert.Equal(42, Assert.Single(read.Containers).Pid);
        PodLower l = Assert.Single(read.Lowers);
        Assert.Equal((lower, "aaaaaaaaaaaaaaaaaa"), (l.Path, l.Id));
    }

    [Fact]
    public async Task A_snapshot_without_a_pod_reads_as_none()
        => Assert.Null(await PausedPod.ReadAsync(Snapshot, Images, CancellationToken.None));

    [Theory]
    [InlineData("/etc/shadow")]
    [InlineData("images/../outside.ext4")]
    [InlineData("images/sub/a.ext4")]
    public async Task A_disk_outside_the_image_cache_is_refused_naming_the_file(string lower)
    {
        await PausedPod.WriteAsync(Snapshot, Pod(lower.StartsWith('/') ? lower : Path.Combine(_dir, lower)), CancellationToken.None);
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => PausedPod.ReadAsync(Snapshot, Images, CancellationToken.None));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        Assert.Contains(PausedPod.FileName, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{")]
    [InlineData("null")]
    [InlineData("{\"Spec\":null,\"Containers\":[],\"Lowers\":[]}")]
    [InlineData("{\"Spec\":{\"Containers\":[{\"Name\":\"web_ovl\",\"Image\":\"x\"}]},\"Containers\":[],\"Lowers\":[{\"Id\":\"a\",\"Path\":\"/x\",\"ContentDigest\":\"d\"}]}")]
    public async Task A_damaged_description_is_refused_as_invalid(string json)
    {
        await File.WriteAllTextAsync(Path.Combine(Snapshot, PausedPod.FileName), json);
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => PausedPod.ReadAsync(Snapshot, Images, CancellationToken.None));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        Assert.Contains("cannot resume", e.Message, StringComparison.Ordinal);
    }
}
