using System.Diagnostics;
using System.Text;
using Vessel.Common;

namespace Vessel.Vmm;

/// <summary>
/// Debian's C virtiofsd (qemu-system-common 7.2) serving one read-only shared directory to one
/// VM over a vhost-user socket (QEMU: <c>-chardev socket</c> + <c>vhost-user-fs-device</c>,
/// guest RAM shared: <see cref="VmConfig.VirtioFs"/>). The shared directory is assembled in a
/// private mount namespace that only this virtiofsd lives in: a small tmpfs on
/// <see cref="MountPoint"/> (an empty directory on the host) holding <c>NAME/rootfs</c>, each a
/// read-only bind mount of one source tree; the tmpfs is then made read-only and virtiofsd
/// execs in its place (<c>unshare --mount --propagation private</c>, so none of these mounts is
/// ever visible on the host and all of them go when the process does). Symlinks inside a tree
/// are served as symlinks (virtiofsd's own namespace sandbox pivots into the shared directory),
/// never resolved on the host. Extended attributes are served (<c>-o xattr</c>, and
/// <c>-o posix_acl</c> so the guest reads and enforces POSIX ACLs) as far as virtiofsd's own
/// capabilities reach: it runs without CAP_SYS_ADMIN, so <c>trusted.*</c> attributes on the host
/// tree are not shown to the guest. The process is started under the parent-death signal
/// (<see cref="OwnedProcessLauncher"/>), so it dies with Vessel; virtiofsd itself exits when
/// QEMU disconnects. Disposal kills it and removes the socket.
/// </summary>
public sealed class VirtioFsDaemon : IAsyncDisposable
{
    /// <summary>Debian 12's virtiofsd (package qemu-system-common).</summary>
    public const string DefaultBinary = "/usr/lib/qemu/virtiofsd";

    /// <summary>
    /// Runs as <c>sh -c SCRIPT sh BINARY SOCKET MOUNTPOINT NAME SOURCE...</c> inside the new mount
    /// namespace: every path is an argument, never spliced into the script.
    /// </summary>
    private const string Script = """
        set -e
        bin=$1; sock=$2; shared=$3; shift 3
        mount -t tmpfs -o mode=0755,size=1m vessel-fs "$shared"
        while [ $# -gt 0 ]; do
          mkdir -p "$shared/$1/rootfs"
          mount --bind "$2" "$shared/$1/rootfs"
          mount -o remount,bind,ro "$shared/$1/rootfs"
          shift 2
        done
        mount -o remount,ro,bind "$shared"
        exec "$bin" --socket-path="$sock" -o source="$shared" -o cache=always -o sandbox=namespace -o xattr -o posix_acl -o log_level=warn
        """;

    private readonly ChildProcess _process;
    private int _disposed;

    private VirtioFsDaemon(Process process, string socketPath, string mountPoint)
    {
        _process = new ChildProcess(process);
        SocketPath = socketPath;
        MountPoint = mountPoint;
    }

    /// <summary>The vhost-user socket that virtiofsd listens on and QEMU connects to.</summary>
    public string SocketPath { get; }

    /// <summary>The empty host directory the shared tree is mounted on (only inside virtiofsd's namespace).</summary>
    public string MountPoint { get; }

    /// <summary>The process id of virtiofsd (the same process as the namespace's first).</summary>
    public int Pid => _process.Pid;

    /// <summary>Whether the process has exited.</summary>
    public bool HasExited => _process.Process.HasExited;

    /// <summary>What virtiofsd wrote to stderr so far, for error messages.</summary>
    public string StandardError => _process.Output;

    /// <summary>
    /// Starts virtiofsd serving <paramref name="trees"/> (name: a directory on the host) as
    /// <c>NAME/rootfs</c>, read-only, and waits until its socket listens.
    /// </summary>
    /// <param name="mountPoint">An empty directory of the caller's (created if missing); nothing is mounted on it outside virtiofsd's namespace.</param>
    public static async Task<VirtioFsDaemon> StartAsync(IReadOnlyList<KeyValuePair<string, string>> trees, string socketPath, string mountPoint, CancellationToken cancellationToken, string binary = DefaultBinary)
    {
        ArgumentNullException.ThrowIfNull(trees);
        if (!File.Exists(binary))
        {
            throw new VesselException(VesselErrorReason.ToolMissing, $"{binary} is missing: virtio-fs lowers need Debian's virtiofsd. Install qemu-system-common (scripts/setup.sh).");
        }
        if (Encoding.UTF8.GetByteCount(socketPath) > 107)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Socket path {socketPath} is longer than the 107 bytes a unix socket allows: use a shorter state directory.");
        }
        var args = new List<string> { "--mount", "--propagation", "private", "--", "/bin/sh", "-c", Script, "sh", binary, socketPath, mountPoint };
        foreach ((string name, string source) in trees)
        {
            if (name.Length == 0 || name.Contains('/', StringComparison.Ordinal) || name is "." or "..")
            {
                throw new ArgumentException($"'{name}' is not a single path component.", nameof(trees));
            }
            if (!Directory.Exists(source) || new FileInfo(source).LinkTarget is not null)
            {
                throw new VesselException(VesselErrorReason.NotFound, $"virtio-fs tree {source} is not a directory.");
            }
            args.AddRange([name, Path.GetFullPath(source)]);
        }
        Directory.CreateDirectory(mountPoint);
        File.Delete(socketPath);
        string unshare = ExternalProcess.ResolveTool("unshare");
        Process process;
        try
        {
            process = await OwnedProcessLauncher.StartAsync(unshare, args);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new VesselException(VesselErrorReason.ToolMissing, $"Cannot run unshare (util-linux) to start virtiofsd: {e.Message}.", e);
        }
        var daemon = new VirtioFsDaemon(process, socketPath, mountPoint);
        try
        {
            await daemon.WaitListeningAsync(cancellationToken);
            return daemon;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    private async Task WaitListeningAsync(CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (!File.Exists(SocketPath))
        {
            if (HasExited)
            {
                string stderr = await _process.FinalOutputAsync(TimeSpan.FromSeconds(2));
                throw new VesselException(VesselErrorReason.ToolFailed, $"virtiofsd exited with status {_process.Process.ExitCode} before it listened on {SocketPath}; its stderr:\n{stderr}");
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new VesselException(VesselErrorReason.Timeout, $"virtiofsd did not listen on {SocketPath} within 30 s; its stderr:\n{StandardError.Trim()}");
            }
            await Task.Delay(5, cancellationToken);
        }
    }

    /// <summary>Kills virtiofsd (and with it its namespace and mounts), waits for it, and removes the socket.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        try
        {
            await _process.DisposeAsync();
        }
        finally
        {
            File.Delete(SocketPath);
            if (Directory.Exists(MountPoint) && !Directory.EnumerateFileSystemEntries(MountPoint).Any())
            {
                Directory.Delete(MountPoint);
            }
        }
    }
}
