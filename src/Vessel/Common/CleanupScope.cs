namespace Vessel.Common;

/// <summary>
/// A cleanup stack for work that acquires resources one after another (after e2b-dev/infra's
/// packages/orchestrator/pkg/sandbox/cleanup.go): each <see cref="Add(string, Func{ValueTask})"/>
/// pushes the release of what was just acquired; <see cref="RunAsync()"/> runs them in reverse
/// order, every one even when an earlier one fails, and joins their errors into one
/// <see cref="VesselException"/> naming each failed step. After a failure,
/// <see cref="RunAfterFailureAsync"/> keeps the original error: a failed cleanup is attached to
/// it rather than swallowed or allowed to replace it. <see cref="Dismiss"/> hands everything
/// over to a new owner on success. Not thread-safe: one owner adds and runs.
/// </summary>
internal sealed class CleanupScope
{
    private readonly Stack<(string Name, Func<ValueTask> Release)> _steps = new();

    /// <summary>How many cleanups are pending.</summary>
    public int Count => _steps.Count;

    /// <summary>Pushes the release of a resource just acquired.</summary>
    public void Add(string name, Func<ValueTask> release) => _steps.Push((name, release));

    /// <summary>Pushes a synchronous release.</summary>
    public void Add(string name, Action release)
    {
        _steps.Push((name, Release));

        ValueTask Release()
        {
            release();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>Pushes the disposal of <paramref name="resource"/>.</summary>
    public T Add<T>(string name, T resource)
        where T : IAsyncDisposable
    {
        _steps.Push((name, resource.DisposeAsync));
        return resource;
    }

    /// <summary>Forgets every pending cleanup: their resources now belong to someone else.</summary>
    public void Dismiss() => _steps.Clear();

    /// <summary>Runs every pending cleanup, last added first; throws their joined errors.</summary>
    public async Task RunAsync()
    {
        List<(string Name, Exception Error)> errors = await RunAllAsync();
        if (errors.Count > 0)
        {
            throw new VesselException(ReasonOf(errors[0].Error), $"cleanup failed: {Describe(errors)}", new AggregateException(errors.Select(e => e.Error)));
        }
    }

    /// <summary>
    /// Runs every pending cleanup after <paramref name="failure"/>; returns when all succeeded (the
    /// caller rethrows the original with <c>throw;</c>), else throws one error that leads with the
    /// original and joins the cleanup errors to it.
    /// </summary>
    public async Task RunAfterFailureAsync(Exception failure)
    {
        List<(string Name, Exception Error)> errors = await RunAllAsync();
        if (errors.Count > 0)
        {
            throw new VesselException(ReasonOf(failure), $"{failure.Message} (cleanup also failed: {Describe(errors)})",
                new AggregateException([failure, .. errors.Select(e => e.Error)]));
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a resource and disposes it on every path: on success a
    /// failed disposal is the error; on failure (cancellation included) the original error is
    /// kept and a failed disposal is attached to it.
    /// </summary>
    public static async Task<T> RunAsync<TResource, T>(TResource resource, Func<TResource, Task<T>> work)
        where TResource : IAsyncDisposable
    {
        var scope = new CleanupScope();
        scope.Add(typeof(TResource).Name, resource);
        T result;
        try
        {
            result = await work(resource);
        }
        catch (Exception failure)
        {
            await scope.RunAfterFailureAsync(failure);
            throw;
        }
        await scope.RunAsync();
        return result;
    }

    private async Task<List<(string Name, Exception Error)>> RunAllAsync()
    {
        var errors = new List<(string, Exception)>();
        while (_steps.TryPop(out (string Name, Func<ValueTask> Release) step))
        {
            try
            {
                await step.Release();
            }
            catch (Exception e)
            {
                errors.Add((step.Name, e));
            }
        }
        return errors;
    }

    private static VesselErrorReason ReasonOf(Exception e) => e is VesselException v ? v.Reason : VesselErrorReason.Unknown;

    private static string Describe(List<(string Name, Exception Error)> errors) => string.Join("; ", errors.Select(e => $"{e.Name}: {e.Error.Message}"));
}
