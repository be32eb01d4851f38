using Npgsql;

namespace Vessel.IntegrationTests.State;

/// <summary>
/// A real PostgreSQL for tests: Debian's postgresql 15, a cluster made by initdb in a temp
/// directory and served on a private unix socket in it only (no TCP: <c>listen_addresses=''</c>).
/// PostgreSQL refuses to run as root, so under root initdb and postgres run as nobody (setpriv,
/// which execs, so the process started here is the postmaster itself). Dispose stops it with a
/// fast shutdown (clients disconnected), waits for it and removes its directory.
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    public const string BinDirectory = "/usr/lib/postgresql/15/bin";
    public const string User = "vessel";
    private const int Port = 5432; // names the socket file only: the socket directory is private
    private readonly Process _process;
    private readonly TempDirectory _root;
    private readonly Task _stderr;

    private PostgresServer(Process process, TempDirectory root, Task stderr)
    {
        _process = process;
        _root = root;
        _stderr = stderr;
        ProcessId = process.Id;
    }

    /// <summary>The directory of the server's socket.</summary>
    public string SocketDirectory => _root.Combine("sock");

    /// <summary>The directory holding the cluster and the socket (gone after dispose).</summary>
    public string RootDirectory => _root.Path;

    /// <summary>The postmaster's pid (the process started here: setpriv execs).</summary>
    public int ProcessId { get; private set; }

    /// <summary>A <c>postgres://</c> URL of <paramref name="database"/> on this server (VESSEL_STATE's form).</summary>
    public string Url(string database) => $"postgres://{User}@/{database}?host={Uri.EscapeDataString(SocketDirectory)}&port={Port}";

    /// <summary>Creates a fresh empty database and returns its URL.</summary>
    public async Task<string> CreateDatabaseAsync(CancellationToken ct)
    {
        string name = "t" + Guid.NewGuid().ToString("N")[..16];
        await using var c = new NpgsqlConnection(AdminConnectionString);
        await c.OpenAsync(ct);
        await using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", c);
        await cmd.ExecuteNonQueryAsync(ct);
        return Url(name);
    }

    /// <summary>Runs one statement on <paramref name="url"/>'s database (tests reach behind the store).</summary>
    public static async Task ExecuteAsync(string url, string sql, CancellationToken ct)
    {
        await using var c = new NpgsqlConnection(Vessel.State.PostgresStateStore.Parse(url).ConnectionString + ";Pooling=false");
        await c.OpenAsync(ct);
#pragma warning disable CA2100 // test SQL
        await using var cmd = new NpgsqlCommand(sql, c);
#pragma warning restore CA2100
        await cmd.ExecuteNonQueryAsync(ct);
    }

    private string AdminConnectionString => $"Host={SocketDirectory};Port={Port};Username={User};Database=postgres;Pooling=false";

    public static async Task<PostgresServer> StartAsync(CancellationToken ct)
    {
        TempDirectory root = TempDirectory.Create("vessel-pg-");
        Process? process = null;
        try
        {
            string data = root.Combine("data");
            Directory.CreateDirectory(root.Combine("sock"));
            if (VesselSettings.IsRoot)
            {
                (await ExternalProcess.RunAsync("chown", ["-R", "nobody:nogroup", root.Path], ct)).EnsureSuccess();
            }
            ProcessResult init = await ExternalProcess.RunAsync(AsServerUser(Path.Combine(BinDirectory, "initdb"))[0],
                [.. AsServerUser(Path.Combine(BinDirectory, "initdb")).Skip(1), "-D", data, "-U", User, "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
                ct, workingDirectory: root.Path, timeout: TimeSpan.FromMinutes(2));
            init.EnsureSuccess();
            string[] postgres = AsServerUser(Path.Combine(BinDirectory, "postgres"));
            var psi = new ProcessStartInfo(postgres[0])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
                WorkingDirectory = root.Path,
            };
            foreach (string a in postgres.Skip(1).Concat(["-D", data, "-k", root.Combine("sock"), "-p", Port.ToString(CultureInfo.InvariantCulture),
                "-c", "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=200"]))
            {
                psi.ArgumentList.Add(a);
            }
            process = Process.Start(psi) ?? throw new InvalidOperationException("postgres did not start");
            _ = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var log = new System.Text.StringBuilder();
            Process started = process;
            Task stderr = Task.Run(async () =>
            {
                while (await started.StandardError.ReadLineAsync(CancellationToken.None) is string line)
                {
                    lock (log)
                    {
                        log.AppendLine(line);
                    }
                    if (line.Contains("ready to accept connections", StringComparison.Ordinal))
                    {
                        ready.TrySetResult();
                    }
                }
                ready.TrySetException(new InvalidOperationException($"postgres exited before it was ready:\n{log}"));
            }, CancellationToken.None);
            await ready.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
            return new PostgresServer(process, root, stderr);
        }
        catch
        {
            if (process is not null)
            {
                await ProcessTable.KillTreeAsync(process);
            }
            root.Dispose();
            throw;
        }
    }

    /// <summary>Fast shutdown (SIGINT: clients disconnected, a checkpoint, exit), then the directory goes.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            (await ExternalProcess.RunAsync("kill", ["-INT", _process.Id.ToString(CultureInfo.InvariantCulture)], CancellationToken.None)).EnsureSuccess();
            using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await _process.WaitForExitAsync(patience.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync(CancellationToken.None);
            }
        }
        await _stderr.ContinueWith(_ => { }, TaskScheduler.Default);
        _process.Dispose();
        _root.Dispose();
    }

    private static string[] AsServerUser(string program)
        => VesselSettings.IsRoot ? ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", program] : [program];
}
