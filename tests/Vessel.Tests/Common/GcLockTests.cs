namespace Vessel.Tests.Common;

/// <summary>The home's gc lock against another process's flock(1): builders share it, gc excludes them.</summary>
public sealed class GcLockTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-gclock-test-");

    public void Dispose() => _dir.Dispose();

    private VesselHome Home => new(_dir.Path);

    /// <summary>flock(1) holding the lock file in another process until killed; returns once it holds it.</summary>
    private async Task<Process> HoldInAnotherProcessAsync(bool shared)
    {
        Directory.CreateDirectory(Home.Locks);
        var psi = new ProcessStartInfo("flock") { UseShellExecute = false };
        foreach (string a in new[] { "--close", shared ? "--shared" : "--exclusive", GcLock.PathOf(Home), "sleep", "60" })
        {
            psi.ArgumentList.Add(a);
        }
        Process holder = Process.Start(psi)!;
        for (int i = 0; i < 200; i++)
        {
            ProcessResult probe = await ExternalProcess.RunAsync("flock", ["--nonblock", "--exclusive", GcLock.PathOf(Home), "true"], CancellationToken.None);
            if (probe.ExitCode != 0)
            {
                return holder;
            }
            await Task.Delay(20);
        }
        holder.Kill(entireProcessTree: true);
        throw new TimeoutException("flock did not take the lock");
    }

    [Fact(Timeout = 30_000)]
    public async Task Builders_share_the_lock_and_gc_waits_until_the_last_one_is_gone()
    {
        using Process other = await HoldInAnotherProcessAsync(shared: true);
        using (GcLock shared = await GcLock.SharedAsync(Home, () => Assert.Fail("a shared holder must not wait for another"), CancellationToken.None))
        {
        }
        bool waited = false;
        Task<GcLock> gc = GcLock.ExclusiveAsync(Home, () => waited = true, CancellationToken.None);
        await Task.Delay(500);
        Assert.False(gc.IsCompleted);
        Assert.True(waited);
        other.Kill(entireProcessTree: true); // the kernel drops a dead holder's lock
        using GcLock held = await gc.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact(Timeout = 30_000)]
    public async Task A_build_waits_while_gc_holds_the_lock()
    {
        using Process gc = await HoldInAnotherProcessAsync(shared: false);
        bool waited = false;
        Task<GcLock> build = GcLock.SharedAsync(Home, () => waited = true, CancellationToken.None);
        await Task.Delay(500);
        Assert.False(build.IsCompleted);
        Assert.True(waited);
        gc.Kill(entireProcessTree: true);
        using GcLock held = await build.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
