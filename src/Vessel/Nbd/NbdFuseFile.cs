using System.Diagnostics;
using System.Text;
using Vessel.Blocks;
using Vessel.Common;

namespace Vessel.Nbd;

/// <summary>
/// A block device seen by the host as a plain file, so that e2fsprogs (resize2fs, e2fsck,
/// tune2fs, debugfs) run on a copy-on-write overlay without copying it: an in-process
/// <see cref="NbdServer"/> on a private unix socket, and <c>nbdfuse</c> mounting that export
/// as <see cref="FilePath"/>. This object owns the server, the nbdfuse process, the FUSE
/// mount and its temporary directory; <see cref="DisposeAsync"/> releases them in order
/// (unmount, wait for nbdfuse, stop the server, delete the directory) within
/// <see cref="CleanupDeadline"/>, and throws if any of that failed rather than hiding it.
/// </summary>
internal sealed class NbdFuseFile : IAsyncDisposable
{
    public static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(20);
    public static readonly TimeSpan CleanupDeadline = TimeSpan.FromSeconds(20);

    private readonly TempDirectory _directory;
    private readonly NbdServer _server;
    private readonly Process _nbdfuse;
    private readonly StringBuilder _stderr;
    private int _disposed;

    private NbdFuseFile(TempDirectory directory, NbdServer server, Process nbdfuse, StringBuilder stderr, string mountPoint)
    {
        _directory = directory;
        _server = server;
        _nbdfuse = nbdfuse;
        _stderr = stderr;
        MountPoint = mountPoint;
        FilePath = Path.Combine(mountPoint, "disk");
    }

    /// <summary>The file that reads and writes the device.</summary>
    public string FilePath { get; }

    public string MountPoint { get; }

    /// <summary>True when this host can do it: nbdfuse, fusermount3 and /dev/fuse.</summary>
    public static bool IsSupported => ExternalProcess.IsAvailable("nbdfuse") && ExternalProcess.IsAvailable("fusermount3") && File.Exists("/dev/fuse");

    /// <summary>Serves <paramref name="device"/> and mounts it; the device stays owned by the caller and must outlive this object.</summary>
    public static async Task<NbdFuseFile> MountAsync(IBlockDevice device, string workDirectory, CancellationToken cancellationToken)
    {
        if (!IsSupported)
        {
            throw new VesselException(VesselErrorReason.ToolMissing,
                "exposing a layer as a file needs nbdfuse (libnbd-bin), fusermount3 (fuse3) and /dev/fuse; install them with scripts/setup.sh.");
        }
        // Short names: a unix socket path is limited to 107 bytes.
        TempDirectory directory = TempDirectory.Create("nf-", workDirectory);
        NbdServer? server = null;
        Process? process = null;
        var stderr = new StringBuilder();
        try
        {
            string socket = directory.Combine("s");
            string mountPoint = directory.Combine("m");
            string pidFile = directory.Combine("pid");
            Directory.CreateDirectory(mountPoint);
            server = new NbdServer(new NbdServerOptions { UnixSocketPath = socket, MaxConnections = 16 });
            server.AddExport(string.Empty, device);
            await server.StartAsync(cancellationToken);

            var psi = new ProcessStartInfo(ExternalProcess.ResolveTool("nbdfuse"))
            {
                UseShellExecute = false,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            foreach (string a in (string[])["-P", pidFile, Path.Combine(mountPoint, "disk"), "--unix", socket])
            {
                psi.ArgumentList.Add(a);
            }
            process = Process.Start(psi) ?? throw new VesselException(VesselErrorReason.ToolFailed, "nbdfuse did not start.");
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (stderr)
                    {
                        stderr.AppendLine(e.Data);
                    }
                }
            };
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();

            // nbdfuse writes its pid file once the mount serves requests.
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(StartDeadline);
            while (!File.Exists(pidFile) || new FileInfo(pidFile).Length == 0)
            {
                if (process.HasExited)
                {
                    throw new VesselException(VesselErrorReason.ToolFailed, $"nbdfuse exited with {process.ExitCode} before mounting: {Tail(stderr)}");
                }
                try
                {
                    await Task.Delay(20, deadline.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new TimeoutException($"nbdfuse did not mount within {StartDeadline.TotalSeconds:0} s: {Tail(stderr)}");
                }
            }
            return new NbdFuseFile(directory, server, process, stderr, mountPoint);
        }
        catch (Exception e)
        {
            var errors = new List<Exception>();
            await CleanupAsync(directory, server, process, Path.Combine(directory.Path, "m"), errors);
            if (errors.Count > 0)
            {
                throw new AggregateException($"mounting the layer failed ({e.Message}) and so did its cleanup.", [e, .. errors]);
            }
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        var errors = new List<Exception>();
        await CleanupAsync(_directory, _server, _nbdfuse, MountPoint, errors);
        if (errors.Count > 0)
        {
            throw new VesselException(VesselErrorReason.ToolFailed,
                $"cleaning up the nbdfuse view {MountPoint} failed: {string.Join("; ", errors.Select(e => e.Message))}", new AggregateException(errors));
        }
    }

    /// <summary>Unmounts (which makes nbdfuse flush and exit), waits for it, stops the server, deletes the directory; errors are collected, not thrown.</summary>
    private static async Task CleanupAsync(TempDirectory directory, NbdServer? server, Process? process, string mountPoint, List<Exception> errors)
    {
        using var deadline = new CancellationTokenSource(CleanupDeadline);
        if (process is not null)
        {
            if (IsMounted(mountPoint))
            {
                try
                {
                    ProcessResult r = await ExternalProcess.RunAsync("fusermount3", ["-u", mountPoint], deadline.Token, timeout: CleanupDeadline);
                    if (!r.Succeeded)
                    {
                        // Busy (a tool still has the file open): detach lazily so nothing stays mounted.
                        ProcessResult lazy = await ExternalProcess.RunAsync("fusermount3", ["-u", "-z", mountPoint], deadline.Token, timeout: CleanupDeadline);
                        errors.Add(new VesselException(VesselErrorReason.ToolFailed,
                            $"fusermount3 -u {mountPoint} failed ({r.StandardError.Trim()}); lazy unmount {(lazy.Succeeded ? "succeeded" : "failed too")}."));
                    }
                }
                catch (Exception e) when (e is VesselException or TimeoutException or OperationCanceledException)
                {
                    errors.Add(e);
                }
            }
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                errors.Add(new TimeoutException($"nbdfuse (pid {process.Id}) did not exit within {CleanupDeadline.TotalSeconds:0} s of unmounting; killed it."));
                try
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync(CancellationToken.None);
                }
                catch (InvalidOperationException)
                {
                }
            }
            process.Dispose();
        }
        if (server is not null)
        {
            try
            {
                await server.DisposeAsync();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or VesselException)
            {
                errors.Add(e);
            }
        }
        if (IsMounted(mountPoint))
        {
            errors.Add(new IOException($"{mountPoint} is still mounted; its directory is left in place."));
            return;
        }
        try
        {
            directory.Dispose();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            errors.Add(e);
        }
    }

    /// <summary>Whether <paramref name="path"/> is a mount point now (from /proc/self/mountinfo).</summary>
    public static bool IsMounted(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd('/');
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            string[] fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == full)
            {
                return true;
            }
        }
        return false;
    }

    private static string Unescape(string mountInfoPath) => mountInfoPath.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
        .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);

    private static string Tail(StringBuilder sb)
    {
        lock (sb)
        {
            string s = sb.ToString().Trim();
            return s.Length == 0 ? "(no output)" : s.Length > 1000 ? "..." + s[^1000..] : s;
        }
    }
}
