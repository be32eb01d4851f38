using Vessel.Ext4;

namespace Vessel.Tests.Templates;

public sealed class ReservedBlocksHookTests
{
    [RequiresFact("mke2fs", "tune2fs", Timeout = 60_000)]
    public async Task Sets_reserved_blocks_with_host_tune2fs()
    {
        using TempDirectory dir = TempDirectory.Create("vessel-hook-");
        string image = dir.Combine("r.ext4");
        (await ExternalProcess.RunAsync("mke2fs", ["-q", "-t", "ext4", "-b", "4096", "-m", "0", image, "64M"], CancellationToken.None)).EnsureSuccess();
        await ReservedBlocks.Hook(8L << 20).RunAsync(new PreBootContext(image, dir.Path), CancellationToken.None);
        ProcessResult info = (await ExternalProcess.RunAsync("tune2fs", ["-l", image], CancellationToken.None)).EnsureSuccess();
        Assert.Contains("Reserved block count:     2048", info.StandardOutput, StringComparison.Ordinal);
    }

    [RequiresFact("mke2fs", "tune2fs", Timeout = 60_000)]
    public async Task Refuses_to_reserve_most_of_the_disk_and_rejects_a_non_ext4_file()
    {
        using TempDirectory dir = TempDirectory.Create("vessel-hook-");
        string image = dir.Combine("r.ext4");
        (await ExternalProcess.RunAsync("mke2fs", ["-q", "-t", "ext4", image, "16M"], CancellationToken.None)).EnsureSuccess();
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => ReservedBlocks.Hook(15L << 20).RunAsync(new PreBootContext(image, dir.Path), CancellationToken.None));
        Assert.Contains("over half", e.Message, StringComparison.Ordinal);
        string junk = dir.Combine("junk");
        await File.WriteAllBytesAsync(junk, new byte[1 << 20]);
        await Assert.ThrowsAsync<VesselException>(() => ReservedBlocks.Hook(1 << 20).RunAsync(new PreBootContext(junk, dir.Path), CancellationToken.None));
    }

    [RequiresFact("mke2fs", "tune2fs", "dumpe2fs", Timeout = 60_000)]
    public async Task Sandbox_and_template_paths_reserve_the_same_blocks_for_the_same_request()
    {
        using TempDirectory dir = TempDirectory.Create("vessel-hook-");
        async Task<string> Image(string name)
        {
            string image = dir.Combine(name);
            (await ExternalProcess.RunAsync("mke2fs", ["-q", "-t", "ext4", "-b", "4096", "-m", "0", image, "64M"], CancellationToken.None)).EnsureSuccess();
            return image;
        }
        async Task<long> Reserved(string image) => (await Ext4Tools.ReadInfoAsync(image, CancellationToken.None)).ReservedBlocks;

        // A request that is not a whole number of blocks: both paths round up to 2049 blocks.
        long odd = (8L << 20) + 1;
        string viaHook = await Image("hook.ext4");
        string viaTools = await Image("tools.ext4");
        await ReservedBlocks.Hook(odd).RunAsync(new PreBootContext(viaHook, dir.Path), CancellationToken.None);
        await Ext4Tools.SetReservedAsync(viaTools, odd, CancellationToken.None);
        Assert.Equal(2049, await Reserved(viaHook));
        Assert.Equal(await Reserved(viaHook), await Reserved(viaTools));

        // The template's base hook for 8 MiB and the sandbox hook for 8 MiB agree too.
        string viaTemplate = await Image("template.ext4");
        await PreBootHook.RunAllAsync(ReservedBlocks.Hooks(BuildPhase.Base, 8), new PreBootContext(viaTemplate, dir.Path), null, CancellationToken.None);
        await ReservedBlocks.Hook(8L << 20).RunAsync(new PreBootContext(viaHook, dir.Path), CancellationToken.None);
        Assert.Equal(2048, await Reserved(viaTemplate));
        Assert.Equal(await Reserved(viaTemplate), await Reserved(viaHook));
    }
}
