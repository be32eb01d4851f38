using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Vessel.Interop;

namespace Vessel.Ext4;

/// <summary>
/// Positional writes into the image file. Adjacent writes (consecutive small files land
/// next to each other) are coalesced into large chunks, which a background thread writes
/// with <c>O_DIRECT</c> while the caller goes on parsing: the disk works in parallel with
/// the CPU, the page cache is not filled with an image nobody reads back, and the final
/// fsync has little left to do. A write error surfaces on the caller's next call and
/// sticks. Where the filesystem refuses <c>O_DIRECT</c> (tmpfs) the chunks go through the
/// page cache instead, still written in the background.
/// </summary>
internal sealed unsafe class ImageFile : IDisposable
{
    private const int ChunkSize = 4 << 20; // dd's bs=4M reaches the disk's sequential speed
    private const int Chunks = 6; // in flight or being filled: bounds the memory at 24 MiB
    private const int DirectAlignment = 4096; // O_DIRECT wants offsets, lengths and memory aligned to the logical block
    private const int OpenWriteOnly = 0x1; // O_WRONLY
    private const int OpenCloseOnExec = 0x80000; // O_CLOEXEC

    private readonly string _path;
    private readonly SafeFileHandle _handle;
    private SafeFileHandle? _direct; // null where the filesystem refuses O_DIRECT
    private readonly BlockingCollection<Chunk> _free = new(new ConcurrentQueue<Chunk>());
    private readonly BlockingCollection<Chunk> _queue = new(new ConcurrentQueue<Chunk>());
    private readonly Thread _writer;
    private readonly List<Chunk> _all = [];
    private Chunk? _current;
    private int _inFlight;
    private volatile Exception? _error;
    private volatile bool _discard;
    private bool _disposed;

    public ImageFile(string path)
    {
        _path = path;
        _handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite);
        // .NET has no O_DIRECT option on Unix; a second descriptor opened with it takes the chunks.
        int directFlag = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;
        int fd = OperatingSystem.IsLinux() ? LibC.Open(path, OpenWriteOnly | OpenCloseOnExec | directFlag) : -1;
        if (fd >= 0)
        {
            _direct = new SafeFileHandle(fd, ownsHandle: true);
        }
        // else O_DIRECT was refused (EINVAL on some filesystems): the chunks go through the page cache.
        for (int i = 0; i < Chunks; i++)
        {
            var chunk = new Chunk();
            _all.Add(chunk);
            _free.Add(chunk);
        }
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "ext4 image writer" };
        _writer.Start();
    }

    public long BytesWritten { get; private set; }

    /// <summary>How long the caller waited for the disk (every chunk in flight, or a flush).</summary>
    public TimeSpan WaitedForDisk => System.Diagnostics.Stopwatch.GetElapsedTime(0, _waitTicks);

    private long _waitTicks;

    /// <summary>The end of the furthest write so far, in bytes.</summary>
    public long HighWater { get; private set; }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        ThrowIfFailed();
        BytesWritten += data.Length;
        HighWater = Math.Max(HighWater, offset + data.Length);
        while (!data.IsEmpty)
        {
            Chunk? chunk = _current;
            if (chunk is not null && (offset != chunk.Start + chunk.Length || chunk.Length == ChunkSize))
            {
                Submit();
                chunk = null;
            }
            if (chunk is null)
            {
                chunk = _current = TakeFree();
                chunk.Start = offset;
                chunk.Length = 0;
            }
            int take = Math.Min(data.Length, ChunkSize - chunk.Length);
            data[..take].CopyTo(chunk.Span[chunk.Length..]);
            chunk.Length += take;
            data = data[take..];
            offset += take;
        }
    }

    /// <summary>Hands the chunk being filled to the writer and waits until every write reached the file.</summary>
    public void Flush()
    {
        ThrowIfFailed();
        Submit();
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        lock (_free)
        {
            while (Volatile.Read(ref _inFlight) > 0)
            {
                Monitor.Wait(_free);
            }
        }
        _waitTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;
        ThrowIfFailed();
    }

    public void SetLength(long length)
    {
        Flush();
        RandomAccess.SetLength(_handle, length);
    }

    /// <summary>Deallocates a range so stale data of deleted files never reaches the guest; writes zeros where holes are unsupported.</summary>
    public void Zero(long offset, long length)
    {
        Flush();
        if (UnixFile.TryPunchHole(_handle, offset, length))
        {
            return;
        }
        byte[] zeros = new byte[1 << 20];
        while (length > 0)
        {
            int n = (int)Math.Min(zeros.Length, length);
            Write(offset, zeros.AsSpan(0, n));
            offset += n;
            length -= n;
        }
        Flush();
    }

    public void FlushToDisk()
    {
        Flush();
        RandomAccess.FlushToDisk(_handle);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _discard = true; // a successful build flushed already; a failed one deletes the file
        _queue.CompleteAdding();
        _writer.Join();
        _handle.Dispose();
        _direct?.Dispose();
        foreach (Chunk chunk in _all)
        {
            chunk.Dispose();
        }
        _free.Dispose();
        _queue.Dispose();
    }

    private Chunk TakeFree()
    {
        if (!_free.TryTake(out Chunk? chunk))
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            chunk = _free.Take();
            _waitTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;
        }
        ThrowIfFailed();
        return chunk;
    }

    private void Submit()
    {
        Chunk? chunk = _current;
        _current = null;
        if (chunk is null)
        {
            return;
        }
        if (chunk.Length == 0)
        {
            _free.Add(chunk);
            return;
        }
        Interlocked.Increment(ref _inFlight);
        _queue.Add(chunk);
    }

    private void WriteLoop()
    {
        foreach (Chunk chunk in _queue.GetConsumingEnumerable())
        {
            if (_error is null && !_discard)
            {
                try
                {
                    WriteChunk(chunk);
                }
                catch (Exception e)
                {
                    _error = e; // the caller sees it on its next call; later chunks are dropped
                }
            }
            _free.Add(chunk);
            lock (_free)
            {
                Interlocked.Decrement(ref _inFlight);
                Monitor.PulseAll(_free);
            }
        }
    }

    private void WriteChunk(Chunk chunk)
    {
        ReadOnlySpan<byte> data = chunk.Span[..chunk.Length];
        if (_direct is not null && chunk.Start % DirectAlignment == 0 && chunk.Length % DirectAlignment == 0)
        {
            try
            {
                RandomAccess.Write(_direct, data, chunk.Start);
                return;
            }
            catch (IOException)
            {
                // A filesystem that opens O_DIRECT but refuses the write (EINVAL): the page cache from now on.
                _direct.Dispose();
                _direct = null;
            }
        }
        RandomAccess.Write(_handle, data, chunk.Start);
    }

    private void ThrowIfFailed()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_error is Exception e)
        {
            throw new IOException($"writing the image '{_path}' failed: {e.Message}", e);
        }
    }

    /// <summary>A write buffer in aligned native memory (O_DIRECT reads straight from it).</summary>
    private sealed class Chunk : IDisposable
    {
        private byte* _memory = (byte*)NativeMemory.AlignedAlloc(ChunkSize, DirectAlignment);

        public long Start;
        public int Length;

        public Span<byte> Span => new(_memory, ChunkSize);

        public void Dispose()
        {
            NativeMemory.AlignedFree(_memory);
            _memory = null;
        }
    }
}
