namespace Vessel.Tests.Templates;

public sealed class PreBootHookTests
{
    private static readonly PreBootContext s_context = new("/tmp/rootfs.ext4", "/tmp");

    [Fact]
    public async Task Hooks_run_in_order_and_each_is_reported_as_it_starts()
    {
        var events = new List<string>();
        PreBootHook[] hooks =
        [
            new("first", (_, _) => { events.Add("ran first"); return Task.CompletedTask; }),
            new("second", (ctx, _) => { events.Add("ran second on " + ctx.RootfsPath); return Task.CompletedTask; }),
        ];

        await PreBootHook.RunAllAsync(hooks, s_context, events.Add, CancellationToken.None);

        Assert.Equal(["pre-boot hook: first", "ran first", "pre-boot hook: second", "ran second on /tmp/rootfs.ext4"], events);
    }

    [Fact]
    public async Task A_failing_hook_stops_the_rest_and_the_error_names_it_and_keeps_its_reason()
    {
        bool laterRan = false;
        PreBootHook[] hooks =
        [
            new("tune", (_, _) => throw new VesselException(VesselErrorReason.NoSpace, "over half the disk")),
            new("later", (_, _) => { laterRan = true; return Task.CompletedTask; }),
        ];

        VesselException e = await Assert.ThrowsAsync<VesselException>(() => PreBootHook.RunAllAsync(hooks, s_context, null, CancellationToken.None));

        Assert.False(laterRan);
        Assert.Equal(VesselErrorReason.NoSpace, e.Reason);
        Assert.Contains("'tune'", e.Message, StringComparison.Ordinal);
        Assert.Contains("over half the disk", e.Message, StringComparison.Ordinal);

        PreBootHook plain = new("plain", (_, _) => throw new InvalidOperationException("hook says no"));
        VesselException p = await Assert.ThrowsAsync<VesselException>(() => PreBootHook.RunAllAsync([plain], s_context, null, CancellationToken.None));
        Assert.Equal(VesselErrorReason.ToolFailed, p.Reason);
    }

    [Fact]
    public async Task Cancellation_passes_through_unwrapped()
    {
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        PreBootHook hook = new("waits", (_, ct) => Task.Delay(Timeout.Infinite, ct));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => PreBootHook.RunAllAsync([hook], s_context, null, cts.Token));
    }
}
