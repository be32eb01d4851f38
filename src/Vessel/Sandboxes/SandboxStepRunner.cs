using System.Diagnostics;
using System.Text;
using Vessel.Agent;
using Vessel.Agent.Protocol;
using Vessel.Common;
using Vessel.Rootfs;
using Vessel.Tar;
using Vessel.Templates;
using Vessel.Vmm;

namespace Vessel.Sandboxes;

/// <summary>
/// Runs template build steps in a sandbox VM booted on the build's copy-on-write layer (served
/// over NBD from the sandbox's directory), with the pre-boot hooks run on the host before the
/// VM starts. RUN goes through the agent (a shell in the rootfs, with the step's env, workdir
/// and user); COPY streams a tar of the build context into the guest's provisioning busybox;
/// WORKDIR creates the directory. Every step ends with a guest <c>sync</c>, so its writes are on
/// the layer when it returns. Finalize starts the start command in the background, polls the
/// ready check, and snapshots the VM (RAM file + device state) with its disk.
/// </summary>
internal sealed class SandboxStepRunner : IStepRunner
{
    /// <summary>Where the start command's output goes in the guest (a file: nobody reads a pipe after the snapshot).</summary>
    internal const string StartLog = Provisioning.VesselDirectory + "/start.log";

    private readonly SandboxManager _manager;

    public SandboxStepRunner(SandboxManager manager)
    {
        _manager = manager;
    }

    public string Description => "sandbox VM";

    public string SnapshotIdentity => Snapshots ? $"vm:kit={_manager.Kit.Manifest.Id}" : "vm:no-snapshot";

    public Acceleration Acceleration { get; init; } = Acceleration.Auto;

    /// <summary>How long the ready check may keep failing after the start command started.</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Snapshot the VM in finalize (false: stop it cleanly and keep only the disk).</summary>
    public bool Snapshots { get; init; } = true;

    public async Task<IStepSession> StartAsync(StepSessionRequest request, CancellationToken cancellationToken)
    {
        request.Report($"booting a build VM ({request.Cpu} vCPU, {request.MemoryMb} MiB)");
        Sandbox sandbox = await _manager.CreateAsync(new SandboxOptions
        {
            Device = request.Disk,
            PreBootHooks = request.PreBootHooks,
            Report = request.Report,
            MemoryMiB = request.MemoryMb,
            Vcpus = request.Cpu,
            Snapshottable = Snapshots,
            Acceleration = Acceleration,
            Network = request.Network ?? NetworkConfig.Default,
        }, cancellationToken);
        request.Report($"build VM {sandbox.Id} ready in {sandbox.Timings.AgentReady.TotalSeconds:0.0} s ({sandbox.VirtualMachine.Acceleration})");
        try
        {
            string shell = await TryStatAsync(sandbox, "/bin/sh", cancellationToken) is not null ? "/bin/sh" : Provisioning.GuestBusybox;
            return new Session(this, sandbox, shell, request.WorkDirectory);
        }
        catch
        {
            await sandbox.KillAsync();
            throw;
        }
    }

    /// <summary>lstat in the guest; null when the path does not exist (ENOENT).</summary>
    private static async Task<FileEntry?> TryStatAsync(Sandbox sandbox, string path, CancellationToken cancellationToken)
    {
        try
        {
            return await sandbox.Agent.StatAsync(path, cancellationToken);
        }
        catch (AgentException e) when (e.Code == 2)
        {
            return null;
        }
    }

    private sealed class Session(SandboxStepRunner runner, Sandbox sandbox, string shell, string workDirectory) : IStepSession
    {
        private string[] Shell(string command) => shell == Provisioning.GuestBusybox ? [Provisioning.GuestBusybox, "sh", "-c", command] : [shell, "-c", command];

        public async Task RunAsync(TemplateStep step, TemplateConfig config, CopySource? copy, Action<string> output, CancellationToken cancellationToken)
        {
            switch (step.Kind)
            {
                case StepKind.Run:
                    await RunCommandAsync(step.ToString(), new ExecRequest(Shell(step.Arguments[0]))
                    {
                        Environment = config.Env,
                        WorkingDirectory = config.Workdir,
                        User = config.User,
                    }, output, cancellationToken);
                    break;
                case StepKind.Copy:
                    await CopyAsync(step, copy!, output, cancellationToken);
                    break;
                case StepKind.Workdir:
                    await sandbox.Agent.MkdirAsync(step.Arguments[0], 0x1ED, parents: true, cancellationToken);
                    break;
                default:
                    return; // ENV and USER change the config only: nothing to sync
            }
            await SyncAsync(output, cancellationToken);
        }

        public async Task<string?> FinalizeAsync(TemplateConfig config, string snapshotDirectory, Action<string> output, CancellationToken cancellationToken)
        {
            if (config.Start is { } start)
            {
                // The log file is made by root and writable by the start command's user.
                await RunCommandAsync("start log", new ExecRequest([Provisioning.GuestBusybox, "sh", "-c", $": > {StartLog} && chmod 666 {StartLog}"]), output, cancellationToken);
                // setsid + & : the start command outlives this exec and the agent connection, in its own session.
                string launch = $"{Provisioning.GuestBusybox} setsid {string.Join(' ', Shell(Quote(start)))} </dev/null >>{StartLog} 2>&1 &";
                await RunCommandAsync("start " + start, new ExecRequest([Provisioning.GuestBusybox, "sh", "-c", launch])
                {
                    Environment = config.Env,
                    WorkingDirectory = config.Workdir,
                    User = config.User,
                }, output, cancellationToken);
                output($"started: {start}");
            }
            if (config.Ready is { } ready)
            {
                await WaitReadyAsync(config, ready, output, cancellationToken);
            }
            if (!runner.Snapshots)
            {
                output("stopping the build VM (no snapshot)");
                await sandbox.StopAsync();
                return null;
            }
            var sw = Stopwatch.StartNew();
            SandboxSnapshot snapshot = await sandbox.SnapshotAndStopAsync(snapshotDirectory, cancellationToken);
            long state = new FileInfo(Path.Combine(snapshotDirectory, SandboxSnapshot.StateFile)).Length;
            output($"snapshot: {snapshot.MemoryMiB} MiB RAM file + {state / 1024} KiB device state in {sw.Elapsed.TotalMilliseconds:0} ms");
            return snapshotDirectory;
        }

        private async Task WaitReadyAsync(TemplateConfig config, string ready, Action<string> output, CancellationToken cancellationToken)
        {
            var sw = Stopwatch.StartNew();
            int attempts = 0;
            ExitStatus? last = null;
            string lastOutput = string.Empty;
            while (sw.Elapsed < runner.ReadyTimeout)
            {
                attempts++;
                using var captured = new MemoryStream();
                last = await sandbox.ExecAsync(new ExecRequest(Shell(ready))
                {
                    Environment = config.Env,
                    WorkingDirectory = config.Workdir,
                    User = config.User,
                    Timeout = TimeSpan.FromSeconds(30),
                }, null, captured, captured, cancellationToken);
                if (last.ExitCode == 0 && !last.TimedOut)
                {
                    output($"ready after {sw.Elapsed.TotalSeconds:0.0} s ({attempts} checks)");
                    return;
                }
                lastOutput = Encoding.UTF8.GetString(captured.ToArray());
                await Task.Delay(TimeSpan.FromMilliseconds(250), cancellationToken);
            }
            string log = await ReadStartLogAsync(cancellationToken);
            throw new VesselException(VesselErrorReason.Timeout,
                $"finalize: the ready check '{ready}' did not pass within {runner.ReadyTimeout.TotalSeconds:0} s ({attempts} checks, last exit {last?.ExitCode}{(last?.TimedOut == true ? ", timed out" : string.Empty)}: {Tail(lastOutput)})."
                + (log.Length > 0 ? $" The start command's output ({StartLog}):\n{Tail(log)}" : string.Empty));
        }

        private async Task<string> ReadStartLogAsync(CancellationToken cancellationToken)
        {
            try
            {
                using var log = new MemoryStream();
                await sandbox.Agent.ReadFileAsync(StartLog, log, cancellationToken);
                return Encoding.UTF8.GetString(log.ToArray());
            }
            catch (AgentException)
            {
                return string.Empty;
            }
        }

        private async Task CopyAsync(TemplateStep step, CopySource copy, Action<string> output, CancellationToken cancellationToken)
        {
            string destination = step.Arguments[1];
            string root = destination.TrimEnd('/');
            if (root.Length == 0)
            {
                root = "/";
            }
            string extractInto;
            string? fileName = null;
            if (copy.IsDirectory)
            {
                extractInto = root;
            }
            else
            {
                FileEntry? existing = await TryStatAsync(sandbox, root, cancellationToken);
                if (destination.EndsWith('/') || existing?.Kind == FileKind.Directory)
                {
                    extractInto = root;
                    fileName = Path.GetFileName(copy.Root);
                }
                else
                {
                    extractInto = Path.GetDirectoryName(root) is { Length: > 0 } parent ? parent : "/";
                    fileName = Path.GetFileName(root);
                }
            }
            FileEntry? into = await TryStatAsync(sandbox, extractInto, cancellationToken);
            if (into is not null && into.Kind != FileKind.Directory)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"{step}: '{extractInto}' in the image is not a directory.");
            }
            if (into is null)
            {
                await sandbox.Agent.MkdirAsync(extractInto, 0x1ED, parents: true, cancellationToken);
            }
            output($"copying {copy.Entries.Count} entries to {destination}");
            string tar = Path.Combine(workDirectory, $"copy-{Guid.NewGuid():N}.tar");
            try
            {
                await WriteTarAsync(copy, fileName, tar, cancellationToken);
                await using FileStream stdin = File.OpenRead(tar);
                await RunCommandAsync(step.ToString(), new ExecRequest([Provisioning.GuestBusybox, "tar", "-x", "-f", "-", "-C", extractInto]), output, cancellationToken, stdin);
            }
            finally
            {
                File.Delete(tar);
            }
        }

        /// <summary>The COPY source as a tar owned by root: entries relative to the directory it is extracted into.</summary>
        private static async Task WriteTarAsync(CopySource copy, string? fileName, string path, CancellationToken cancellationToken)
        {
            DateTimeOffset now = DateTimeOffset.UtcNow;
            await using FileStream file = new(path, FileMode.CreateNew, FileAccess.Write);
            await using var writer = new TarWriter(file);
            foreach (CopyEntry e in copy.Entries)
            {
                string name = fileName ?? (e.RelativePath.Length == 0 ? "." : e.RelativePath);
                var mode = (UnixFileMode)(e.Mode & 0xFFF);
                switch (e.Kind)
                {
                    case CopyEntryKind.Directory:
                        await writer.WriteDirectoryAsync(name, mode, now, cancellationToken);
                        break;
                    case CopyEntryKind.Symlink:
                        await writer.WriteSymlinkAsync(name, e.LinkTarget!, mode, now, cancellationToken);
                        break;
                    default:
                        await using (FileStream data = File.OpenRead(e.FullPath))
                        {
                            await writer.WriteFileAsync(name, mode, now, data, data.Length, cancellationToken);
                        }
                        break;
                }
            }
        }

        private async Task SyncAsync(Action<string> output, CancellationToken cancellationToken)
            => await RunCommandAsync("sync", new ExecRequest([Provisioning.GuestBusybox, "sync"]), output, cancellationToken);

        /// <summary>Runs a command, streaming its output by lines; a non-zero exit throws with the tail of the output.</summary>
        private async Task RunCommandAsync(string what, ExecRequest request, Action<string> output, CancellationToken cancellationToken, Stream? stdin = null)
        {
            using var lines = new LineStream(output);
            ExitStatus status = await sandbox.ExecAsync(request, stdin, lines, lines, cancellationToken);
            lines.Complete();
            if (status.ExitCode != 0 || status.Signal != 0 || status.TimedOut)
            {
                int code = status.Signal != 0 ? 128 + status.Signal : status.ExitCode;
                throw new TemplateStepFailedException(what, code, lines.Tail);
            }
        }

        public async ValueTask DisposeAsync() => await sandbox.KillAsync();

        private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

        private static string Tail(string text, int max = 2000) => text.Length <= max ? text.Trim() : "..." + text[^max..].Trim();
    }

    /// <summary>A write-only stream that hands each complete line to a callback and keeps the last lines for error messages.</summary>
    private sealed class LineStream(Action<string> output) : WriteOnlyStream
    {
        private const int TailLines = 20;
        private readonly Queue<string> _tail = new();
        private readonly MemoryStream _partial = new();
        private readonly object _gate = new();

        public string Tail
        {
            get
            {
                lock (_gate)
                {
                    return string.Join('\n', _tail);
                }
            }
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            lock (_gate)
            {
                while (buffer.Length > 0)
                {
                    int nl = buffer.IndexOf((byte)'\n');
                    if (nl < 0)
                    {
                        _partial.Write(buffer);
                        if (_partial.Length > 16384)
                        {
                            Emit(); // a very long line is still shown, in pieces
                        }
                        return;
                    }
                    _partial.Write(buffer[..nl]);
                    Emit();
                    buffer = buffer[(nl + 1)..];
                }
            }
        }

        public void Complete()
        {
            lock (_gate)
            {
                if (_partial.Length > 0)
                {
                    Emit();
                }
            }
        }

        private void Emit()
        {
            string line = Encoding.UTF8.GetString(_partial.GetBuffer(), 0, (int)_partial.Length).TrimEnd('\r');
            _partial.SetLength(0);
            _tail.Enqueue(line);
            if (_tail.Count > TailLines)
            {
                _tail.Dequeue();
            }
            output(line);
        }
    }
}
