using System.Text.RegularExpressions;

namespace Vessel.IntegrationTests.Blocks;

/// <summary>
/// A real S3-compatible server for tests: s3rver (npm, pinned), installed once into the test
/// cache, started on a free loopback port with its own data directory and bucket, and killed
/// with its data on dispose. Chosen over Ceph's radosgw, which needs a monitor and OSDs even
/// for one node; s3rver speaks the same REST API with SigV4 and stores objects as files.
/// </summary>
public sealed partial class S3Server : IAsyncDisposable
{
    public const string Version = "3.7.1";
    public const string Key = "S3RVER"; // s3rver's fixed access and secret key
    private readonly Process _process;
    private readonly TempDirectory _data;

    private S3Server(Process process, TempDirectory data, Uri endpoint, string bucket)
        => (_process, _data, Endpoint, Bucket) = (process, data, endpoint, bucket);

    public Uri Endpoint { get; }

    public string Bucket { get; }

    /// <summary>True while an s3rver process started from this server's data directory is alive (node and any child).</summary>
    public bool IsRunning => ProcessTable.Matching(c => c.Contains(_data.Path, StringComparison.Ordinal)).Count > 0;

    /// <summary>The environment a `vessel` process needs to use this server.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["VESSEL_S3_ENDPOINT"] = Endpoint.ToString(),
        ["VESSEL_S3_ACCESS_KEY"] = Key,
        ["VESSEL_S3_SECRET_KEY"] = Key,
    };

    /// <summary>Options for a store under <paramref name="prefix"/> with its chunk cache in <paramref name="cache"/>.</summary>
    public S3StoreOptions Options(string prefix, string cache, int chunkSize = 64 << 10, long cacheBytes = 1L << 30) => new()
    {
        Endpoint = Endpoint,
        Bucket = Bucket,
        Prefix = prefix + "/",
        AccessKey = Key,
        SecretKey = Key,
        CacheDirectory = cache,
        ChunkSize = chunkSize,
        CacheBytes = cacheBytes,
    };

    /// <summary>A started server when npm and node are here, else null (the tests that need it name them in RequiresFact and skip).</summary>
    public static async Task<S3Server?> StartIfAvailableAsync(CancellationToken ct) =>
        Requirements.FirstMissing(["npm", "node"]) is null ? await StartAsync(ct) : null;

    public static async Task<S3Server> StartAsync(CancellationToken ct)
    {
        string bin = Install();
        TempDirectory data = TempDirectory.Create("vessel-s3-");
        var psi = new ProcessStartInfo(bin)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "-d", data.Path, "-a", "127.0.0.1", "-p", "0", "--configure-bucket", "vessel" })
        {
            psi.ArgumentList.Add(a);
        }
        Process process = Process.Start(psi) ?? throw new InvalidOperationException("s3rver did not start");
        try
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wait.CancelAfter(TimeSpan.FromSeconds(60));
            while (true)
            {
                string? line = await process.StandardOutput.ReadLineAsync(wait.Token)
                    ?? throw new InvalidOperationException($"s3rver exited before listening: {await process.StandardError.ReadToEndAsync(ct)}");
                if (Listening().Match(line) is { Success: true } m)
                {
                    _ = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
                    _ = process.StandardError.ReadToEndAsync(CancellationToken.None);
                    return new S3Server(process, data, new Uri($"http://127.0.0.1:{m.Groups[1].Value}"), "vessel");
                }
            }
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            data.Dispose();
            throw;
        }
    }

    /// <summary>Stops the server: the next request fails as a dead endpoint does.</summary>
    public void Stop()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public ValueTask DisposeAsync()
    {
        Stop();
        _process.Dispose();
        _data.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>s3rver's launcher, installed with npm into the test cache on first use (one process installs, others wait).</summary>
    private static string Install()
    {
        string root = Path.Combine(Path.GetDirectoryName(TestImages.CacheDirectory)!, "test-tools");
        string final = Path.Combine(root, $"s3rver-{Version}");
        string bin = Path.Combine(final, "node_modules", ".bin", "s3rver");
        if (File.Exists(bin))
        {
            return bin;
        }
        Directory.CreateDirectory(root);
        using var held = new FileStream(Path.Combine(root, $"s3rver-{Version}.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        if (File.Exists(bin))
        {
            return bin;
        }
        string temp = Path.Combine(root, $".s3rver-{Version}.{Guid.NewGuid():N}.partial");
        Directory.CreateDirectory(temp);
        ProcessResult r = Task.Run(() => ExternalProcess.RunAsync("npm",
            ["install", "--no-audit", "--no-fund", "--prefix", temp, $"s3rver@{Version}"], CancellationToken.None, timeout: TimeSpan.FromMinutes(5)))
            .GetAwaiter().GetResult();
        if (r.ExitCode != 0)
        {
            Directory.Delete(temp, recursive: true);
            throw new InvalidOperationException($"npm install s3rver@{Version} failed: {r.StandardError}");
        }
        Directory.Move(temp, final);
        return bin;
    }

    [GeneratedRegex(@"listening on [0-9.]+:([0-9]+)")]
    private static partial Regex Listening();
}
