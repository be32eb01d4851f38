using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using Vessel.Common;

namespace Vessel.Blocks;

/// <summary>
/// Verified data chunks kept on local disk, bounded in bytes, least recently used first out.
/// A chunk is fetched once however many readers ask for it at the same time, checked by the
/// fetcher, written under a temporary name and renamed, so the cache never holds a partial or
/// unverified chunk. Files are <c>DIR/&lt;build id&gt;/&lt;index&gt;</c>; what an earlier process left
/// is adopted (it was verified before it was renamed into place).
/// </summary>
internal sealed class ChunkCache
{
    private readonly string _root;
    private readonly long _capacity;
    private readonly ConcurrentDictionary<(Guid Build, int Index), Lazy<Task<string>>> _inflight = new();
    private readonly Dictionary<(Guid Build, int Index), Entry> _entries = [];
    private readonly Lock _lock = new();
    private long _bytes;
    private long _clock;

    public ChunkCache(string root, long capacity)
    {
        _root = Path.GetFullPath(root);
        _capacity = capacity;
        Directory.CreateDirectory(_root);
        AdoptExisting();
    }

    /// <summary>Bytes the cache holds now.</summary>
    public long Bytes
    {
        get
        {
            lock (_lock)
            {
                return _bytes;
            }
        }
    }

    /// <summary>Chunks fetched from the store by this process (not served from the cache).</summary>
    public long Fetches => Interlocked.Read(ref _fetches);

    /// <summary>Bytes fetched from the store by this process.</summary>
    public long FetchedBytes => Interlocked.Read(ref _fetchedBytes);

    private long _fetches;
    private long _fetchedBytes;

    /// <summary>The path of a cached chunk, or null when it is not here.</summary>
    public string? TryGet(Guid build, int index)
    {
        lock (_lock)
        {
            if (_entries.TryGetValue((build, index), out Entry? e))
            {
                e.LastUse = ++_clock;
                return e.Path;
            }
            return null;
        }
    }

    /// <summary>The path of the chunk, fetching (and verifying, in <paramref name="fetch"/>) it when missing.</summary>
    public async Task<string> GetAsync(Guid build, int index, Func<CancellationToken, Task<byte[]>> fetch, CancellationToken cancellationToken)
    {
        if (TryGet(build, index) is { } path)
        {
            return path;
        }
        var key = (build, index);
        Lazy<Task<string>> lazy = _inflight.GetOrAdd(key, k => new Lazy<Task<string>>(() => FetchAsync(k, fetch)));
        Task<string> task = lazy.Value;
        // Whoever waits, and however the wait ends, the finished fetch leaves the in-flight table
        // (a failed one may be tried again; a finished one is in the cache).
        _ = task.ContinueWith(_ => _inflight.TryRemove(new KeyValuePair<(Guid, int), Lazy<Task<string>>>(key, lazy)),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return await task.WaitAsync(cancellationToken);
    }

    /// <summary>Reads <paramref name="destination"/> from a cached chunk file at <paramref name="offset"/>.</summary>
    public static void Read(string path, Span<byte> destination, long offset)
    {
        using SafeFileHandle h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        if (PositionalRead.Fill(h, destination, offset) < destination.Length)
        {
            throw new InvalidDataException($"cached chunk {path} is shorter than it was when verified.");
        }
    }

    /// <summary>Drops every cached chunk of <paramref name="build"/> (after the build is deleted).</summary>
    public void Forget(Guid build)
    {
        lock (_lock)
        {
            foreach (var key in _entries.Keys.Where(k => k.Build == build).ToList())
            {
                Remove(key);
            }
        }
        TryDeleteDirectory(Path.Combine(_root, build.ToString("D")));
    }

    private async Task<string> FetchAsync((Guid Build, int Index) key, Func<CancellationToken, Task<byte[]>> fetch)
    {
        // The fetch is shared by every waiter, so no single caller's token may cancel it.
        byte[] data = await fetch(CancellationToken.None);
        Interlocked.Increment(ref _fetches);
        Interlocked.Add(ref _fetchedBytes, data.Length);
        string dir = Path.Combine(_root, key.Build.ToString("D"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, key.Index.ToString("x8", System.Globalization.CultureInfo.InvariantCulture));
        string temp = $"{path}.{ProcessOwner.Current}.{Guid.NewGuid():N}.partial";
        await File.WriteAllBytesAsync(temp, data);
        File.Move(temp, path, overwrite: true);
        lock (_lock)
        {
            if (!_entries.ContainsKey(key))
            {
                _entries[key] = new Entry(path, data.Length) { LastUse = ++_clock };
                _bytes += data.Length;
            }
            EvictOver(key);
        }
        return path;
    }

    private void EvictOver((Guid, int) keep)
    {
        while (_bytes > _capacity && _entries.Count > 1)
        {
            var victim = _entries.Where(e => !e.Key.Equals(keep)).MinBy(e => e.Value.LastUse).Key;
            Remove(victim);
        }
    }

    private void Remove((Guid, int) key)
    {
        if (_entries.Remove(key, out Entry? e))
        {
            _bytes -= e.Length;
            // A reader that opened the file keeps its data; the name goes now.
            try
            {
                File.Delete(e.Path);
            }
            catch (IOException)
            {
                // Already gone.
            }
        }
    }

    private void AdoptExisting()
    {
        foreach (string dir in Directory.EnumerateDirectories(_root))
        {
            if (!Guid.TryParseExact(Path.GetFileName(dir), "D", out Guid build))
            {
                continue;
            }
            foreach (string file in Directory.EnumerateFiles(dir))
            {
                string name = Path.GetFileName(file);
                if (name.EndsWith(".partial", StringComparison.Ordinal))
                {
                    // A fetch that died before its rename was never verified; a live one is another process's.
                    string[] parts = name.Split('.');
                    if (parts.Length == 4 && !ProcessOwner.IsAlive(parts[1]))
                    {
                        File.Delete(file);
                    }
                    continue;
                }
                if (name.Length == 8 && int.TryParse(name, System.Globalization.NumberStyles.HexNumber, null, out int index))
                {
                    long length = new FileInfo(file).Length;
                    _entries[(build, index)] = new Entry(file, length) { LastUse = ++_clock };
                    _bytes += length;
                }
            }
        }
        lock (_lock)
        {
            EvictOver((Guid.Empty, -1));
        }
    }

    private static void TryDeleteDirectory(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
            // Nothing was cached.
        }
    }

    private sealed class Entry(string path, long length)
    {
        public string Path { get; } = path;

        public long Length { get; } = length;

        public long LastUse { get; set; }
    }
}
