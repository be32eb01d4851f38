using Vessel.Common;
using Vessel.Sandboxes;
using Vessel.Testing;
using Xunit;

namespace Vessel.Tests.Sandboxes;

public sealed class ReservedBlocksHookTests
{
    [RequiresFact("mke2fs", "tune2fs", Timeout = 60_000)]
    public async Task Sets_reserved_blocks_with_host_tune2fs()
    {
        using TempDirectory dir = TempDirectory.Create("vessel-hook-");
        string image = dir.Combine("r.ext4");
        (await ExternalProcess.RunAsync("mke2fs", ["-q", "-t", "ext4", "-b", "4096", "-m", "0", image, "64M"], CancellationToken.None)).EnsureSuccess();
        await new ReservedBlocksHook(8L << 20).RunAsync(new PreBootContext("sb-test", image, dir.Path), CancellationToken.None);
        ProcessResult info = (await ExternalProcess.RunAsync("tune2fs", ["-l", image], CancellationToken.None)).EnsureSuccess();
        Assert.Contains("Reserved block count:     2048", info.StandardOutput, StringComparison.Ordinal);
    }

    [RequiresFact("mke2fs", "tune2fs", Timeout = 60_000)]
    public async Task Refuses_to_reserve_most_of_the_disk_and_rejects_a_non_ext4_file()
    {
        using TempDirectory dir = TempDirectory.Create("vessel-hook-");
        string image = dir.Combine("r.ext4");
        (await ExternalProcess.RunAsync("mke2fs", ["-q", "-t", "ext4", image, "16M"], CancellationToken.None)).EnsureSuccess();
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => new ReservedBlocksHook(15L << 20).RunAsync(new PreBootContext("sb", image, dir.Path), CancellationToken.None));
        Assert.Contains("over half", e.Message, StringComparison.Ordinal);
        string junk = dir.Combine("junk");
        await File.WriteAllBytesAsync(junk, new byte[1 << 20]);
        await Assert.ThrowsAsync<VesselException>(() => new ReservedBlocksHook(1 << 20).RunAsync(new PreBootContext("sb", junk, dir.Path), CancellationToken.None));
    }
}
