using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using Vessel.Common;
using Vessel.Interop;

namespace Vessel.Blocks;

/// <summary>
/// Builds in a local directory: <c>builds/&lt;id&gt;/{header,data}</c>. A new build is staged
/// in <c>staging/&lt;id&gt;.&lt;pid&gt;.&lt;nonce&gt;</c>, fsynced, and renamed into <c>builds/</c>
/// (rename(2) of a directory is atomic), then <c>builds/</c> is fsynced. A crash leaves at most a
/// staging directory, which the next process to open the store removes once its owner is gone.
/// </summary>
internal sealed class LocalLayerStorage : ILayerStorage
{
    public const string HeaderFileName = "header";
    public const string DataFileName = "data";
    public const string StampFileName = "verified";
    private const long MaxHeaderBytes = BuildHeader.MetadataSize + ((long)BuildHeader.MaxMappingEntries * BuildMappingEntry.Size) + BuildHeader.TrailerSize;

    private readonly string _builds;
    private readonly string _staging;

    public LocalLayerStorage(string root)
    {
        Root = Path.GetFullPath(root);
        _builds = Path.Combine(Root, "builds");
        _staging = Path.Combine(Root, "staging");
        Directory.CreateDirectory(_builds);
        Directory.CreateDirectory(_staging);
        RemoveAbandonedStaging();
    }

    public string Root { get; }

    public string Location => Root;

    public Task<IReadOnlyList<Guid>> ListAsync(CancellationToken cancellationToken)
    {
        var ids = new List<Guid>();
        foreach (string dir in Directory.EnumerateDirectories(_builds))
        {
            if (Guid.TryParseExact(Path.GetFileName(dir), "D", out Guid id))
            {
                ids.Add(id);
            }
        }
        ids.Sort();
        return Task.FromResult<IReadOnlyList<Guid>>(ids);
    }

    public async Task<byte[]?> TryReadHeaderAsync(Guid buildId, CancellationToken cancellationToken)
    {
        string path = Path.Combine(BuildDirectory(buildId), HeaderFileName);
        try
        {
            long length = new FileInfo(path).Length;
            if (length > MaxHeaderBytes)
            {
                throw new InvalidDataException($"build {buildId}: header is {length} bytes, larger than any valid header.");
            }
            return await File.ReadAllBytesAsync(path, cancellationToken);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public Task<ILayerData> OpenDataAsync(Guid buildId, CancellationToken cancellationToken)
    {
        string path = Path.Combine(BuildDirectory(buildId), DataFileName);
        try
        {
            SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            return Task.FromResult<ILayerData>(new FileLayerData(handle));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new VesselException(VesselErrorReason.NotFound, $"build {buildId}: data file is missing from {Root}.", e);
        }
    }

    public Task<ILayerUpload> BeginUploadAsync(Guid buildId, CancellationToken cancellationToken)
    {
        string dir = Path.Combine(_staging, $"{buildId:D}.{Environment.ProcessId}.{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return Task.FromResult<ILayerUpload>(new Upload(this, buildId, dir));
    }

    public async Task<byte[]?> TryReadStampAsync(Guid buildId, CancellationToken cancellationToken)
    {
        string path = Path.Combine(BuildDirectory(buildId), StampFileName);
        try
        {
            return new FileInfo(path).Length == VerifiedStamp.Size ? await File.ReadAllBytesAsync(path, cancellationToken) : null;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public async Task<bool> TryWriteStampAsync(Guid buildId, ReadOnlyMemory<byte> stamp, CancellationToken cancellationToken)
    {
        // Written aside and renamed over, so readers see the old stamp or the new one. No fsync:
        // a stamp lost (or torn) in a crash only means the next open hashes again.
        string dir = BuildDirectory(buildId);
        string temp = Path.Combine(dir, $"{StampFileName}.{Environment.ProcessId}.{Guid.NewGuid():N}");
        try
        {
            await File.WriteAllBytesAsync(temp, stamp.ToArray(), cancellationToken);
            File.Move(temp, Path.Combine(dir, StampFileName), overwrite: true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
                // Nothing was created, or it cannot be removed either; it is never read as a stamp.
            }
            return false;
        }
    }

    public Task DeleteStampAsync(Guid buildId, CancellationToken cancellationToken)
    {
        try
        {
            File.Delete(Path.Combine(BuildDirectory(buildId), StampFileName));
        }
        catch (DirectoryNotFoundException)
        {
            // The build is gone, and its stamp with it.
        }
        return Task.CompletedTask;
    }

    public Task DeleteAsync(Guid buildId, CancellationToken cancellationToken)
    {
        string dir = BuildDirectory(buildId);
        if (!Directory.Exists(dir))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"build {buildId} is not in {Root}.");
        }
        // Rename out of builds/ first so that nobody ever sees a half-deleted build.
        string doomed = Path.Combine(_staging, $"{buildId:D}.{Environment.ProcessId}.deleted");
        Directory.Move(dir, doomed);
        UnixFile.FsyncDirectory(_builds);
        Directory.Delete(doomed, recursive: true);
        return Task.CompletedTask;
    }

    private string BuildDirectory(Guid buildId) => Path.Combine(_builds, buildId.ToString("D"));

    /// <summary>Removes staging entries (uploads, overlay caches) whose owning process is gone (crash leftovers).</summary>
    private void RemoveAbandonedStaging()
    {
        foreach (string dir in Directory.EnumerateFileSystemEntries(_staging))
        {
            string[] parts = Path.GetFileName(dir).Split('.');
            bool owned = parts.Length >= 2 && (ProcessOwner.IsStamp(parts[1])
                ? ProcessOwner.IsAlive(parts[1])
                : int.TryParse(parts[1], out int pid) && (pid == Environment.ProcessId || IsAlive(pid)));
            if (owned)
            {
                continue; // its owner may still be writing it
            }
            try
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }
                else
                {
                    File.Delete(dir);
                }
            }
            catch (IOException)
            {
                // Another process removed it first.
            }
        }
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private sealed class FileLayerData(SafeFileHandle handle) : ILayerData
    {
        private volatile bool _noWaitUnsupported;

        public long Length { get; } = RandomAccess.GetLength(handle);

        public ValueTask ReadAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken)
        {
            // Positional reads of page-cached data are faster done here than queued to the pool.
            int n = PositionalRead.Fill(handle, destination.Span, offset);
            if (n < destination.Length)
            {
                throw new InvalidDataException($"Build data ends at {offset + n}, before the mapping says it should.");
            }
            return ValueTask.CompletedTask;
        }

        public bool TryReadCached(Span<byte> destination, long offset)
        {
            if (_noWaitUnsupported)
            {
                return false;
            }
            int n = LinuxFile.ReadCached(handle, destination, offset);
            _noWaitUnsupported = n < 0;
            return n == destination.Length; // a short read (not cached, or the data ends early) goes the slow way
        }

        public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges)
        {
            // Published data files never change, so their pages can go to a socket uncopied.
            ranges.Add(new FileRange(handle, offset, length));
            return LinuxFile.IsCached(handle, offset, length);
        }

        public FileIdentity? GetIdentity() => LinuxFile.TryGetIdentity(handle);

        public void Dispose() => handle.Dispose();
    }

    private sealed class Upload : ILayerUpload
    {
        private readonly LocalLayerStorage _owner;
        private readonly Guid _buildId;
        private readonly string _dir;
        private readonly SafeFileHandle _data;
        private long _length;
        private bool _committed;

        public Upload(LocalLayerStorage owner, Guid buildId, string dir)
        {
            _owner = owner;
            _buildId = buildId;
            _dir = dir;
            _data = File.OpenHandle(Path.Combine(dir, DataFileName), FileMode.CreateNew, FileAccess.ReadWrite);
        }

        public async ValueTask AppendAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            await RandomAccess.WriteAsync(_data, data, _length, cancellationToken);
            _length += data.Length;
        }

        public async Task CommitAsync(ReadOnlyMemory<byte> header, CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            RandomAccess.FlushToDisk(_data);
            string headerPath = Path.Combine(_dir, HeaderFileName);
            using (SafeFileHandle h = File.OpenHandle(headerPath, FileMode.CreateNew, FileAccess.Write))
            {
                await RandomAccess.WriteAsync(h, header, 0, cancellationToken);
                RandomAccess.FlushToDisk(h);
            }
            UnixFile.FsyncDirectory(_dir);
            string target = _owner.BuildDirectory(_buildId);
            if (Directory.Exists(target))
            {
                throw new VesselException(VesselErrorReason.AlreadyExists, $"build {_buildId} already exists in {_owner.Root}.");
            }
            Directory.Move(_dir, target);
            _committed = true;
            UnixFile.FsyncDirectory(_owner._builds);
        }

        public ValueTask DisposeAsync()
        {
            _data.Dispose();
            if (!_committed && Directory.Exists(_dir))
            {
                Directory.Delete(_dir, recursive: true);
            }
            return ValueTask.CompletedTask;
        }
    }
}
