using System.Diagnostics;
using System.Text;
using Vessel.Client;
using Vessel.Common;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Client;

/// <summary>
/// A real <c>vessel serve</c> (the built CLI, as a user starts it) on a private home in /tmp,
/// and a template built through its API from the tests' busybox image. Disposal kills what is
/// left through the API, stops the daemon and checks that nothing outlived it: no QEMU process
/// naming the home, no daemon process.
/// </summary>
public sealed class DaemonFixture : IAsyncLifetime
{
    public static readonly string[] Requirements =
        ["qemu-system-x86_64", "busybox", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "debugfs", "root"];

    public const string TemplateName = "sdk-busybox";

    private readonly StringBuilder _log = new();
    private Process? _daemon;

    public TempDirectory? Home { get; private set; }

    public string SocketPath => Home!.Combine("vessel.sock");

    public VesselClient CreateClient() => new(new VesselClientOptions { SocketPath = SocketPath, RequestTimeout = TimeSpan.FromMinutes(5) });

    /// <summary>The daemon's output so far, for failure messages.</summary>
    public string LogTail
    {
        get
        {
            lock (_log)
            {
                string all = _log.ToString();
                return all.Length > 4000 ? all[^4000..] : all;
            }
        }
    }

    public async Task InitializeAsync()
    {
        if (Vessel.Testing.Requirements.FirstMissing(Requirements) is not null)
        {
            return;
        }
        // Short path: the daemon's sockets (its own and QEMU's) must stay under 108 bytes.
        Home = TempDirectory.Create("vsd-", "/tmp");
        try
        {
            await StartAndBuildAsync();
        }
        catch (Exception e)
        {
            // xunit does not dispose a fixture whose initialization failed: release the daemon here.
            try
            {
                await DisposeAsync();
            }
            catch (AggregateException cleanup)
            {
                throw new AggregateException(e, cleanup);
            }
            throw;
        }
    }

    private async Task StartAndBuildAsync()
    {
        string image = BusyboxTarball(Home!.Combine("busybox.tar"));
        await StartDaemonAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(12));
        await using VesselClient client = CreateClient();
        string spec = $$"""
            {"name": "{{TemplateName}}", "from": "tarball:{{image}}", "diskSize": "128M",
             "steps": [{"run": "echo built-by-the-daemon > /etc/sdk-test"}],
             "start": "while :; do date > /tmp/heartbeat; sleep 1; done"}
            """;
        string buildId = await client.Templates.BuildAsync(spec, cts.Token);
        var log = new StringBuilder();
        BuildInfo build = await client.Templates.WaitForBuildAsync(buildId, line => log.AppendLine(line), cts.Token);
        if (build.Status != BuildStatus.Succeeded)
        {
            throw new InvalidOperationException($"The template build failed: {build.Error}\n{log}\ndaemon:\n{LogTail}");
        }
    }

    /// <summary>
    /// A rootfs tarball of Debian's busybox-static (the host's /bin/busybox) with the applets the
    /// tests use linked, a passwd with root and nobody: the smallest image with a shell.
    /// </summary>
    private static string BusyboxTarball(string path)
    {
        string busybox = ExternalProcess.ResolveTool("busybox");
        using (var file = File.Create(path))
        using (var tar = new System.Formats.Tar.TarWriter(file, System.Formats.Tar.TarEntryFormat.Pax))
        {
            foreach (string dir in (string[])["bin/", "etc/", "root/", "tmp/"])
            {
                tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.Directory, dir) { Mode = (UnixFileMode)0x1ED });
            }
            tar.WriteEntry(busybox, "bin/busybox");
            foreach (string applet in (string[])["sh", "cat", "echo", "ls", "mkdir", "rm", "sleep", "date", "id", "printf", "head", "wc", "kill", "env", "pwd", "true", "false", "yes", "seq"])
            {
                tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.SymbolicLink, "bin/" + applet) { LinkName = "busybox", Mode = (UnixFileMode)0x1FF });
            }
            byte[] passwd = Encoding.ASCII.GetBytes("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n");
            tar.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "etc/passwd") { DataStream = new MemoryStream(passwd), Mode = (UnixFileMode)0x1A4 });
        }
        return path;
    }

    /// <summary>Starts <c>vessel serve --home HOME</c> and waits until its socket answers.</summary>
    public async Task StartDaemonAsync()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])[VesselCli.DllPath, "serve", "--home", Home!.Path])
        {
            start.ArgumentList.Add(a);
        }
        _daemon = Process.Start(start)!;
        _daemon.OutputDataReceived += (_, e) => Append(e.Data);
        _daemon.ErrorDataReceived += (_, e) => Append(e.Data);
        _daemon.BeginOutputReadLine();
        _daemon.BeginErrorReadLine();
        var deadline = Stopwatch.StartNew();
        await using VesselClient client = CreateClient();
        while (true)
        {
            try
            {
                await client.Sandboxes.ListAsync();
                return;
            }
            catch (VesselConnectionException) when (deadline.Elapsed < TimeSpan.FromSeconds(90) && !_daemon.HasExited)
            {
                await Task.Delay(200);
            }
            catch (VesselConnectionException e)
            {
                throw new InvalidOperationException($"vessel serve did not answer ({e.Message}); exited: {_daemon.HasExited}\n{LogTail}", e);
            }
        }
    }

    /// <summary>Kills the daemon with SIGKILL (a crash), waits for it to be gone.</summary>
    public async Task KillDaemonAsync()
    {
        _daemon!.Kill();
        await _daemon.WaitForExitAsync();
        _daemon.Dispose();
        _daemon = null;
    }

    /// <summary>QEMU processes whose command line names this home.</summary>
    public IReadOnlyList<int> LeftoverQemus()
    {
        var found = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
            {
                continue;
            }
            try
            {
                string cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains("qemu-system", StringComparison.Ordinal) && cmdline.Contains(Home!.Path, StringComparison.Ordinal))
                {
                    found.Add(pid);
                }
            }
            catch (IOException)
            {
                // The process ended while we looked.
            }
        }
        return found;
    }

    public async Task DisposeAsync()
    {
        if (Home is null)
        {
            return;
        }
        var errors = new List<Exception>();
        try
        {
            if (_daemon is { HasExited: false })
            {
                try
                {
                    await using VesselClient client = CreateClient();
                    foreach (SandboxInfo s in await client.Sandboxes.ListAsync())
                    {
                        await (await client.Sandboxes.GetAsync(s.SandboxId)).KillAsync();
                    }
                }
                catch (Exception e) when (e is VesselApiException or IOException or TimeoutException)
                {
                    errors.Add(e); // still stop the daemon below
                }
                await StopDaemonAsync(errors);
            }
            if (LeftoverQemus() is { Count: > 0 } left)
            {
                errors.Add(new InvalidOperationException("QEMU processes outlived the daemon: " + string.Join(' ', left)));
            }
        }
        finally
        {
            _daemon?.Dispose();
            _daemon = null;
            Home.Dispose();
            Home = null;
        }
        if (errors.Count > 0)
        {
            throw new AggregateException("Cleaning up the daemon fixture failed\n" + LogTail, errors);
        }
    }

    /// <summary>SIGTERM (the daemon's graceful stop), then SIGKILL of its tree if it is not gone within 60 s.</summary>
    private async Task StopDaemonAsync(List<Exception> errors)
    {
        using (Process term = Process.Start("kill", ["-TERM", _daemon!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
        {
            await term.WaitForExitAsync();
        }
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await _daemon.WaitForExitAsync(stop.Token);
        }
        catch (OperationCanceledException)
        {
            _daemon.Kill(entireProcessTree: true);
            await _daemon.WaitForExitAsync();
            errors.Add(new TimeoutException("vessel serve did not stop within 60 s of SIGTERM"));
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_log)
        {
            _log.AppendLine(line);
        }
    }
}
