namespace Vessel.IntegrationTests.Service;

/// <summary>
/// One real daemon for the service tests: the built CLI's <c>vessel serve</c> as its own process,
/// on its unix socket and on loopback TCP with an API key, over a home with one template built by
/// the CLI from a tiny busybox-static OCI image (umoci). Disposal stops the daemon and checks that
/// nothing is left: no QEMU naming the home, no sandbox directory, no paused snapshot, no socket.
/// </summary>
public sealed class DaemonFixture : IAsyncLifetime
{
    public static readonly string[] Requirements = ["qemu-system-x86_64", "umoci", "busybox", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "kill"];

    private Process? _daemon;
    private readonly StringBuilder _log = new();

    public TempDirectory? Work { get; private set; }

    /// <summary>Environment of every CLI run and daemon start of this fixture (e.g. VESSEL_STATE for a daemon on PostgreSQL).</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>More arguments of <c>vessel serve</c> (e.g. --cluster).</summary>
    public IReadOnlyList<string> ServeArguments { get; init; } = [];

    /// <summary>Whether <see cref="InitializeAsync"/> builds template "t" into this home (false: a cluster node that uses another node's template).</summary>
    public bool BuildsTemplate { get; init; } = true;

    public string Home => Work!.Combine("home");

    public string Socket => Path.Combine(Home, "vessel.sock");

    public int Port { get; private set; }

    public string ApiKey { get; private set; } = string.Empty;

    public string ApiKeyId { get; private set; } = string.Empty;

    /// <summary>Whether the daemon process is up (false after a stop, or after it died at a test crash point).</summary>
    public bool IsRunning => _daemon is { HasExited: false };

    /// <summary>Over the unix socket (no key).</summary>
    public HttpClient Unix { get; private set; } = new();

    public string DaemonLog
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public async Task InitializeAsync()
    {
        if (Vessel.Testing.Requirements.FirstMissing(Requirements) is not null)
        {
            return;
        }
        Work = TempDirectory.Create("vsv-", "/tmp"); // short: unix socket paths stay under 108 bytes
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        if (BuildsTemplate)
        {
            await BuildTemplateAsync(cts.Token);
        }
        ProcessResult key = await VesselCli.RunAsync(Environment, cts.Token, "keys", "create", "--name", "tests", "--home", Home);
        Assert.True(key.ExitCode == 0, key.StandardError);
        ApiKey = key.StandardOutput.Trim();
        ApiKeyId = key.StandardError.Split(' ')[2];
        Port = FreePort();
        Unix = UnixClient(Socket);
        await StartAsync(cts.Token);
    }

    private async Task BuildTemplateAsync(CancellationToken ct)
    {
        string image = await MakeImageAsync(ct);
        string spec = Work!.Combine("t.json");
        await File.WriteAllTextAsync(spec, $$"""
            { "name": "t", "from": "oci:{{image}}:t", "diskSize": "64M", "memoryMb": 256,
              "start": "while true; do date > /tmp/heartbeat; sleep 1; done", "ready": "test -s /tmp/heartbeat" }
            """, ct);
        ProcessResult built = await VesselCli.RunAsync(Environment, ct, "template", "build", "-f", spec, "--home", Home);
        Assert.True(built.ExitCode == 0, "template build failed: " + built.StandardError);
    }

    /// <summary>A client on TCP sending <paramref name="key"/> (null: none).</summary>
    public HttpClient Tcp(string? key)
    {
        var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{Port}"), Timeout = TimeSpan.FromMinutes(3) };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Add("X-API-Key", key);
        }
        return client;
    }

    public static HttpClient UnixClient(string socket)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://localhost"), Timeout = TimeSpan.FromMinutes(3) };
    }

    /// <summary>Starts the daemon and waits until it answers on its socket.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => StartAsync(new Dictionary<string, string>(), cancellationToken);

    /// <summary>Starts the daemon with extra environment variables (a test seam such as VESSEL_SERVICE_TEST_CRASH).</summary>
    public async Task StartAsync(IReadOnlyDictionary<string, string> environment, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach ((string name, string value) in Environment.Concat(environment))
        {
            psi.Environment[name] = value;
        }
        foreach (string a in new[] { VesselCli.DllPath, "serve", "--home", Home, "--listen", $"127.0.0.1:{Port}" }.Concat(ServeArguments))
        {
            psi.ArgumentList.Add(a);
        }
        int from;
        lock (_log)
        {
            from = _log.Length; // a restart waits for its own "serving" line
        }
        _daemon = Process.Start(psi)!;
        _daemon.OutputDataReceived += (_, e) => Append(e.Data);
        _daemon.ErrorDataReceived += (_, e) => Append(e.Data);
        _daemon.BeginOutputReadLine();
        _daemon.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            Assert.False(_daemon.HasExited, "the daemon exited: " + DaemonLog);
            if (DaemonLog[from..].Contains("vessel: serving on", StringComparison.Ordinal))
            {
                return;
            }
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(5), "the daemon did not start: " + DaemonLog);
            await Task.Delay(200, cancellationToken);
        }
    }

    /// <summary>Stops the daemon: SIGTERM (graceful) or SIGKILL (a crash).</summary>
    public async Task StopAsync(bool kill9)
    {
        if (_daemon is null)
        {
            return;
        }
        if (kill9)
        {
            _daemon.Kill(); // nothing when it already died (a test crash point)
        }
        else
        {
            (await ExternalProcess.RunAsync("kill", ["-TERM", _daemon.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], CancellationToken.None)).EnsureSuccess();
        }
        await _daemon.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        _daemon.Dispose();
        _daemon = null;
        lock (_log)
        {
            _log.AppendLine("---- daemon stopped ----");
        }
    }

    /// <summary>QEMU processes whose command line names this home.</summary>
    public IReadOnlyList<int> Qemus() => ProcessTable.QemusNaming(Home + "/");

    public static async Task<JsonNode> JsonAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri}: expected {(int)expected}, got {(int)response.StatusCode}: {body}");
        return JsonNode.Parse(body.Length == 0 ? "null" : body) ?? new JsonObject();
    }

    /// <summary>The API's request for <c>/bin/sh -c</c> <paramref name="script"/> (in <paramref name="container"/> of a pod; in the background).</summary>
    public static object Sh(string script, string? container = null, bool background = false)
        => new { cmd = "/bin/sh", args = new[] { "-c", script }, container, background };

    /// <summary>
    /// Runs a command through POST /sandboxes/{id}/commands (<paramref name="request"/>, the API's
    /// JSON, e.g. <see cref="Sh"/>) and parses its NDJSON answer. A status other than
    /// <paramref name="expected"/> fails with the body; a refusal's body comes back as the exit node.
    /// </summary>
    public async Task<CommandRun> ExecAsync(string id, object request, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using HttpResponseMessage response = await Unix.PostAsJsonAsync($"/sandboxes/{id}/commands", request);
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"exec in {id}: {(int)response.StatusCode} {body}");
        if (expected != HttpStatusCode.OK)
        {
            return new CommandRun(string.Empty, string.Empty, JsonNode.Parse(body)!, 0);
        }
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        return ParseCommand(body);
    }

    /// <summary>A command's NDJSON answer: its stdout and stderr, its last line (exit or error; empty when none) and the pid of its start line.</summary>
    public static CommandRun ParseCommand(string ndjson)
    {
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        JsonNode? exit = null;
        int pid = 0;
        foreach (string line in ndjson.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            JsonNode e = JsonNode.Parse(line)!;
            switch (e["type"]!.GetValue<string>())
            {
                case "start":
                    pid = e["pid"]!.GetValue<int>();
                    break;
                case "stdout":
                    stdout.Append(Encoding.UTF8.GetString(Convert.FromBase64String(e["data"]!.GetValue<string>())));
                    break;
                case "stderr":
                    stderr.Append(Encoding.UTF8.GetString(Convert.FromBase64String(e["data"]!.GetValue<string>())));
                    break;
                default:
                    exit = e;
                    break;
            }
        }
        return new CommandRun(stdout.ToString(), stderr.ToString(), exit ?? new JsonObject(), pid);
    }

    /// <summary>
    /// The containers of the pods the API tests create: "web" (the busybox OCI image) running
    /// <paramref name="webCommand"/>, and "side" (the busybox variant, another image) sleeping.
    /// </summary>
    public static object[] WebAndSidePod(params string[] webCommand) =>
    [
        new { name = "web", image = TestImages.BusyboxOciReference, command = webCommand },
        new { name = "side", image = TestImages.BusyboxVariantTarball, command = new[] { "sleep", "100000" } },
    ];

    public async Task<string> CreateSandboxAsync(object request)
    {
        JsonNode created = await JsonAsync(await Unix.PostAsJsonAsync("/sandboxes", request), HttpStatusCode.Created);
        return created["sandboxId"]!.GetValue<string>();
    }

    public async Task DisposeAsync()
    {
        if (Work is null)
        {
            return;
        }
        await StopAsync(kill9: false);
        Unix.Dispose();
        try
        {
            Assert.Empty(Qemus());
            string sandboxes = Path.Combine(Home, "sandboxes");
            Assert.True(!Directory.Exists(sandboxes) || Directory.GetFileSystemEntries(sandboxes).Length == 0, "sandbox directories left: " + string.Join(", ", Directory.Exists(sandboxes) ? Directory.GetFileSystemEntries(sandboxes) : []));
            Assert.False(File.Exists(Socket), "the daemon's socket was left");
        }
        finally
        {
            // Whatever an assertion above found, nothing outlives the tests: the CLI's sweep kills
            // leftover VMMs (their owner, the daemon, is gone) before the home is deleted.
            await VesselCli.RunAsync(Environment, CancellationToken.None, "sandbox", "sweep", "--home", Home);
            Work.Dispose();
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_log)
            {
                _log.AppendLine(line);
            }
        }
    }

    /// <summary>A one-layer OCI image of Debian's busybox-static, made with umoci (as scripts/demo.sh does).</summary>
    private async Task<string> MakeImageAsync(CancellationToken ct)
    {
        string layout = Work!.Combine("oci");
        string bundle = Work.Combine("bundle");
        (await ExternalProcess.RunAsync("umoci", ["init", "--layout", layout], ct)).EnsureSuccess();
        (await ExternalProcess.RunAsync("umoci", ["new", "--image", layout + ":t"], ct)).EnsureSuccess();
        (await ExternalProcess.RunAsync("umoci", ["unpack", "--rootless", "--image", layout + ":t", bundle], ct)).EnsureSuccess();
        string rootfs = Path.Combine(bundle, "rootfs");
        foreach (string d in new[] { "bin", "etc", "root", "tmp" })
        {
            Directory.CreateDirectory(Path.Combine(rootfs, d));
        }
        File.Copy(ExternalProcess.ResolveTool("busybox"), Path.Combine(rootfs, "bin", "busybox"));
        foreach (string applet in new[] { "sh", "ls", "cat", "echo", "sleep", "date", "test", "true", "ln", "mkdir", "rm", "seq", "dd", "head", "wc", "kill", "sync", "md5sum", "ps", "tr" })
        {
            File.CreateSymbolicLink(Path.Combine(rootfs, "bin", applet), "busybox");
        }
        await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n", ct);
        await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "group"), "root:x:0:\n", ct);
        (await ExternalProcess.RunAsync("umoci", ["repack", "--image", layout + ":t", bundle], ct)).EnsureSuccess();
        (await ExternalProcess.RunAsync("umoci", ["config", "--image", layout + ":t", "--config.env", "PATH=/bin", "--config.workingdir", "/root"], ct)).EnsureSuccess();
        return layout;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

[CollectionDefinition(Name)]
public sealed class DaemonCollection : ICollectionFixture<DaemonFixture>
{
    public const string Name = "vessel serve";
}
