namespace Vessel.Templates;

/// <summary>
/// Runs work that owns a resource and releases it on every path: on success a failed
/// cleanup is the error; on failure (cancellation included) the original error is kept and
/// a failed cleanup is attached to it rather than swallowed or allowed to replace it.
/// </summary>
internal static class CleanupScope
{
    public static async Task<T> RunAsync<TResource, T>(TResource resource, Func<TResource, Task<T>> work)
        where TResource : IAsyncDisposable
    {
        T result;
        try
        {
            result = await work(resource);
        }
        catch (Exception failure)
        {
            try
            {
                await resource.DisposeAsync();
            }
            catch (Exception cleanup)
            {
                throw new VesselException(failure is VesselException v ? v.Reason : VesselErrorReason.Unknown,
                    $"{failure.Message} (cleanup also failed: {cleanup.Message})", new AggregateException(failure, cleanup));
            }
            throw;
        }
        await resource.DisposeAsync();
        return result;
    }
}
