namespace Vessel.IntegrationTests.Oci;

/// <summary>
/// A real registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1 with filesystem
/// storage in its own temp directory. Disposal stops the process and deletes the directory.
/// </summary>
internal sealed class LocalRegistry : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TempDirectory _dir;

    private LocalRegistry(Process process, TempDirectory dir, int port) => (_process, _dir, Port) = (process, dir, port);

    public int Port { get; }

    public string Host => $"127.0.0.1:{Port}";

    public string StorageRoot => _dir.Combine("storage");

    public string DirectoryPath => _dir.Path;

    public int ProcessId => _process.Id;

    public static async Task<LocalRegistry> StartAsync(CancellationToken cancellationToken)
    {
        var dir = TempDirectory.Create("vessel-registry-");
        Process? process = null;
        try
        {
            int port = FreePort();
            string config = dir.Combine("config.yml");
            await File.WriteAllTextAsync(config, $"""
                version: 0.1
                log:
                  level: warn
                storage:
                  filesystem:
                    rootdirectory: {dir.Combine("storage")}
                  delete:
                    enabled: true
                http:
                  addr: 127.0.0.1:{port}
                  secret: vessel-test
                """, cancellationToken);
            var psi = new ProcessStartInfo(ExternalProcess.ResolveTool("docker-registry"))
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            psi.ArgumentList.Add("serve");
            psi.ArgumentList.Add(config);
            process = Process.Start(psi)!;
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var registry = new LocalRegistry(process, dir, port);
            await registry.WaitReadyAsync(cancellationToken);
            return registry;
        }
        catch
        {
            if (process is not null)
            {
                await ProcessTable.KillTreeAsync(process);
            }
            dir.Dispose();
            throw;
        }
    }

    /// <summary>The file holding a blob in the registry's storage (distribution's filesystem driver layout).</summary>
    public string BlobDataPath(string digest)
    {
        string hex = digest["sha256:".Length..];
        return Path.Combine(StorageRoot, "docker", "registry", "v2", "blobs", "sha256", hex[..2], hex, "data");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _process.WaitForExitAsync(timeout.Token);
        _process.Dispose();
        _dir.Dispose();
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private async Task WaitReadyAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient();
        for (int i = 0; i < 100; i++)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"docker-registry exited with {_process.ExitCode} at start.");
            }
            try
            {
                using HttpResponseMessage r = await http.GetAsync($"http://{Host}/v2/", cancellationToken);
                if (r.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(100, cancellationToken);
        }
        throw new TimeoutException("docker-registry did not answer /v2/ within 10 s.");
    }
}
