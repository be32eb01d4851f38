namespace Vessel.Common;

/// <summary>
/// The home's collection lock, <c>locks/gc.lock</c>: whoever publishes something that nothing
/// refers to yet (a template build, between storing a layer or snapshot and writing the row that
/// names it; a daemon's pause, between exporting the layer and updating the sandbox's row) holds
/// it shared, and <c>vessel gc</c> holds it exclusive, so gc never sees such a thing half
/// published. An flock (.NET takes a shared one for a read-only stream with FileShare.Read and an
/// exclusive one for FileShare.None), so the kernel drops it when its holder dies.
/// </summary>
public sealed class GcLock : IDisposable
{
    private static readonly TimeSpan s_poll = TimeSpan.FromMilliseconds(100);
    private readonly FileStream _file;

    private GcLock(FileStream file) => _file = file;

    /// <summary>The lock file of <paramref name="home"/>.</summary>
    public static string PathOf(VesselHome home) => Path.Combine(home.Locks, "gc.lock");

    /// <summary>Held by builders and pauses; waits while a gc runs (<paramref name="waiting"/> is called once then).</summary>
    public static Task<GcLock> SharedAsync(VesselHome home, Action? waiting, CancellationToken cancellationToken)
        => AcquireAsync(home, exclusive: false, waiting, cancellationToken);

    /// <summary>Held by <c>vessel gc</c>; waits while builds or pauses hold it shared (<paramref name="waiting"/> is called once then).</summary>
    public static Task<GcLock> ExclusiveAsync(VesselHome home, Action? waiting, CancellationToken cancellationToken)
        => AcquireAsync(home, exclusive: true, waiting, cancellationToken);

    private static async Task<GcLock> AcquireAsync(VesselHome home, bool exclusive, Action? waiting, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(home.Locks);
        string path = PathOf(home);
        while (true)
        {
            try
            {
                // A shared flock needs a read-only stream: .NET takes LOCK_EX for any other.
                return new GcLock(exclusive
                    ? new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)
                    : new FileStream(path, FileMode.OpenOrCreate, FileAccess.Read, FileShare.ReadWrite));
            }
            catch (IOException) when (File.Exists(path))
            {
                waiting?.Invoke();
                waiting = null;
                await Task.Delay(s_poll, cancellationToken);
            }
        }
    }

    public void Dispose() => _file.Dispose();
}
