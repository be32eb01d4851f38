using System.Collections.Concurrent;

namespace Vessel.Templates;

/// <summary>
/// Exclusive right to build one phase hash, so that concurrent builds of the same template
/// do the work once: the second waits, then finds the first one's cache entry. Within a
/// process a semaphore per hash; across processes an exclusive lock on
/// <c>locks/HASH.lock</c> (.NET takes flock for FileShare.None), which the kernel drops if
/// the holder dies, so a crashed build never leaves a stale lock.
/// </summary>
internal sealed class PhaseLock : IAsyncDisposable
{
    private static readonly ConcurrentDictionary<string, SemaphoreSlim> s_local = new(StringComparer.Ordinal);
    private static readonly TimeSpan s_poll = TimeSpan.FromMilliseconds(100);
    private readonly SemaphoreSlim _local;
    private readonly FileStream _file;
    private int _released;

    private PhaseLock(SemaphoreSlim local, FileStream file)
    {
        _local = local;
        _file = file;
    }

    /// <summary>Waits for the lock; <paramref name="waiting"/> is called once if another build holds it.</summary>
    public static async Task<PhaseLock> AcquireAsync(string lockDirectory, string hash, Action? waiting, CancellationToken cancellationToken)
    {
        SemaphoreSlim local = s_local.GetOrAdd(hash, _ => new SemaphoreSlim(1, 1));
        if (!await local.WaitAsync(0, cancellationToken))
        {
            waiting?.Invoke();
            waiting = null;
            await local.WaitAsync(cancellationToken);
        }
        try
        {
            Directory.CreateDirectory(lockDirectory);
            string path = Path.Combine(lockDirectory, hash + ".lock");
            while (true)
            {
                try
                {
                    var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                    return new PhaseLock(local, file);
                }
                catch (IOException) when (File.Exists(path))
                {
                    waiting?.Invoke();
                    waiting = null;
                    await Task.Delay(s_poll, cancellationToken);
                }
            }
        }
        catch
        {
            local.Release();
            throw;
        }
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            _file.Dispose();
            _local.Release();
        }
        return ValueTask.CompletedTask;
    }
}
