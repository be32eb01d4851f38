namespace Vessel.Tests.Common;

public sealed class CleanupScopeTests
{
    [Fact]
    public async Task Cleanups_run_last_added_first_and_every_one_runs_when_some_fail()
    {
        var ran = new List<string>();
        var scope = new CleanupScope();
        scope.Add("directory", () => ran.Add("directory"));
        scope.Add("server", () =>
        {
            ran.Add("server");
            throw new IOException("socket busy");
        });
        scope.Add("vm", () =>
        {
            ran.Add("vm");
            return ValueTask.CompletedTask;
        });
        scope.Add("agent", () => throw new VesselException(VesselErrorReason.Unavailable, "agent gone"));

        VesselException e = await Assert.ThrowsAsync<VesselException>(scope.RunAsync);

        Assert.Equal(["vm", "server", "directory"], ran);
        Assert.Equal(VesselErrorReason.Unavailable, e.Reason);
        Assert.Contains("agent: agent gone", e.Message, StringComparison.Ordinal);
        Assert.Contains("server: socket busy", e.Message, StringComparison.Ordinal);
        Assert.Equal(2, Assert.IsType<AggregateException>(e.InnerException).InnerExceptions.Count);
        Assert.Equal(0, scope.Count);
    }

    [Fact]
    public async Task After_a_failure_clean_cleanups_leave_the_original_error_to_be_rethrown()
    {
        var ran = new List<string>();
        var scope = new CleanupScope();
        scope.Add("a", () => ran.Add("a"));
        scope.Add("b", () => ran.Add("b"));

        await scope.RunAfterFailureAsync(new InvalidOperationException("boot failed"));

        Assert.Equal(["b", "a"], ran);
    }

    [Fact]
    public async Task A_failed_cleanup_after_a_failure_is_attached_to_the_original_error_not_swallowed()
    {
        var scope = new CleanupScope();
        scope.Add("nbd server", () => throw new IOException("unlink failed"));
        var original = new VesselException(VesselErrorReason.ToolFailed, "qemu exited with 1");

        VesselException e = await Assert.ThrowsAsync<VesselException>(() => scope.RunAfterFailureAsync(original));

        Assert.Equal(VesselErrorReason.ToolFailed, e.Reason);
        Assert.StartsWith("qemu exited with 1 (cleanup also failed: nbd server: unlink failed)", e.Message, StringComparison.Ordinal);
        Assert.Same(original, Assert.IsType<AggregateException>(e.InnerException).InnerExceptions[0]);
    }

    [Fact]
    public async Task Dismissed_cleanups_do_not_run_because_their_resources_have_a_new_owner()
    {
        bool ran = false;
        var scope = new CleanupScope();
        scope.Add("vm", () => ran = true);
        scope.Dismiss();

        await scope.RunAsync();

        Assert.False(ran);
    }

    [Fact]
    public async Task Run_with_a_resource_disposes_it_on_success_and_keeps_the_work_error_on_failure()
    {
        var resource = new Resource();
        Assert.Equal(42, await CleanupScope.RunAsync(resource, _ => Task.FromResult(42)));
        Assert.Equal(1, resource.Disposals);

        var failing = new Resource { Failure = new IOException("umount: busy") };
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => CleanupScope.RunAsync<Resource, int>(failing, _ => throw new TimeoutException("hook timed out")));
        Assert.Equal(1, failing.Disposals);
        Assert.StartsWith("hook timed out (cleanup also failed: Resource: umount: busy)", e.Message, StringComparison.Ordinal);

        var canceled = new Resource();
        await Assert.ThrowsAsync<OperationCanceledException>(() => CleanupScope.RunAsync<Resource, int>(canceled, _ => throw new OperationCanceledException()));
        Assert.Equal(1, canceled.Disposals);
    }

    private sealed class Resource : IAsyncDisposable
    {
        public int Disposals { get; private set; }

        public Exception? Failure { get; init; }

        public ValueTask DisposeAsync()
        {
            Disposals++;
            return Failure is null ? ValueTask.CompletedTask : ValueTask.FromException(Failure);
        }
    }
}
