using System.Data.Common;
using Microsoft.Data.Sqlite;
using Vessel.Common;

namespace Vessel.State;

/// <summary>
/// The state in a SQLite file of the home (the default). WAL mode so readers never wait for a
/// build; safe for several processes (SQLite's file locks, retried until <see cref="BusyTimeout"/>).
/// The schema version is SQLite's <c>user_version</c>; <see cref="Migrations"/>[i] takes a
/// database from version i to i + 1, all in one transaction on open.
/// </summary>
internal sealed class SqliteStateStore : StateStore
{
    public const int SchemaVersion = 5;
    public static readonly TimeSpan BusyTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Version 1: templates, builds and the phase cache.</summary>
    private const string TemplatesSchema = """
        CREATE TABLE IF NOT EXISTS templates (
            name TEXT PRIMARY KEY,
            spec_json TEXT NOT NULL,
            final_hash TEXT NOT NULL,
            layer_build TEXT NOT NULL,
            disk_size INTEGER NOT NULL,
            config_json TEXT NOT NULL,
            snapshot_dir TEXT,
            built_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS builds (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            template TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
            started_at TEXT NOT NULL,
            finished_at TEXT,
            error TEXT,
            final_hash TEXT);
        CREATE TABLE IF NOT EXISTS cache_entries (
            hash TEXT PRIMARY KEY,
            phase TEXT NOT NULL,
            layer_build TEXT NOT NULL,
            config_json TEXT NOT NULL,
            snapshot_dir TEXT,
            created_at TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS cache_entries_layer ON cache_entries(layer_build);
        """;

    /// <summary>Version 2: what the daemon keeps.</summary>
    private const string ServiceSchema = """
        CREATE TABLE IF NOT EXISTS sandboxes (
            id TEXT PRIMARY KEY,
            template TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running', 'paused')),
            started_at TEXT NOT NULL,
            end_at TEXT NOT NULL,
            timeout_seconds INTEGER NOT NULL,
            auto_pause INTEGER NOT NULL,
            metadata_json TEXT NOT NULL,
            env_json TEXT NOT NULL,
            layers_json TEXT NOT NULL,
            snapshot_dir TEXT,
            work_dir TEXT);
        CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            suffix TEXT NOT NULL,
            created_at TEXT NOT NULL);
        """;

    /// <summary>Version 3: lost sandboxes (version 2 databases of an earlier Vessel may have it already, hence IF NOT EXISTS).</summary>
    private const string LostSchema = """
        CREATE TABLE IF NOT EXISTS lost_sandboxes (
            id TEXT PRIMARY KEY,
            template TEXT NOT NULL,
            lost_at TEXT NOT NULL,
            reason TEXT NOT NULL);
        """;

    /// <summary>Version 4: the node that owns each sandbox, and the nodes' heartbeats (docs/cluster.md; the same tables as PostgreSQL's version 2).</summary>
    private const string NodeSchema = """
        ALTER TABLE sandboxes ADD COLUMN node TEXT NOT NULL DEFAULT '';
        CREATE TABLE IF NOT EXISTS nodes (
            name TEXT PRIMARY KEY,
            api_url TEXT NOT NULL,
            running INTEGER NOT NULL,
            memory_available INTEGER NOT NULL,
            builds_json TEXT NOT NULL,
            updated_at TEXT NOT NULL);
        """;

    /// <summary>Version 5: a paused sandbox's snapshot in the cluster's bucket (docs/cluster.md; PostgreSQL's version 3).</summary>
    private const string RemoteSnapshotSchema = "ALTER TABLE sandboxes ADD COLUMN remote_snapshot TEXT;";

    private static readonly Func<DbConnection, CancellationToken, Task>[] Migrations =
    [
        (c, ct) => ExecuteAsync(c, TemplatesSchema, ct),
        (c, ct) => ExecuteAsync(c, ServiceSchema, ct),
        async (c, ct) =>
        {
            await AddBuildOwnerColumnAsync(c, ct);
            await ExecuteAsync(c, LostSchema, ct);
        },
        (c, ct) => ExecuteAsync(c, NodeSchema, ct),
        (c, ct) => ExecuteAsync(c, RemoteSnapshotSchema, ct),
    ];

    private readonly string _path;
    private readonly string _connectionString;

    private SqliteStateStore(string path)
    {
        _path = path;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            DefaultTimeout = (int)BusyTimeout.TotalSeconds,
            Pooling = false, // no pooled handle keeps the file open after the caller is done
        }.ToString();
    }

    public override string Location => _path;

    public static SqliteStateStore Create(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return new SqliteStateStore(path);
    }

    private protected override async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await ExecuteAsync(c, "PRAGMA journal_mode=WAL;", cancellationToken);
        await using DbTransaction tx = await c.BeginTransactionAsync(cancellationToken);
        long version = (long)(await ScalarAsync(c, "PRAGMA user_version;", cancellationToken))!;
        if (version > SchemaVersion)
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"state database {_path} has schema version {version}; this Vessel knows version {SchemaVersion}. Upgrade Vessel.");
        }
        for (long v = version; v < SchemaVersion; v++)
        {
            await Migrations[v](c, cancellationToken);
        }
        await ExecuteAsync(c, $"PRAGMA user_version = {SchemaVersion};", cancellationToken);
        await tx.CommitAsync(cancellationToken);
    }

    private protected override async Task<DbConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        var c = new SqliteConnection(_connectionString);
        try
        {
            await c.OpenAsync(cancellationToken);
            return c;
        }
        catch (SqliteException e)
        {
            await c.DisposeAsync();
            throw new VesselException(VesselErrorReason.Unavailable, $"cannot open the state database {_path}: {e.Message}", e);
        }
    }

    /// <summary>builds.owner, added where missing (an earlier Vessel added it without a schema version).</summary>
    private static async Task AddBuildOwnerColumnAsync(DbConnection c, CancellationToken cancellationToken)
    {
        if ((long)(await ScalarAsync(c, "SELECT COUNT(*) FROM pragma_table_info('builds') WHERE name = 'owner'", cancellationToken))! == 0)
        {
            await ExecuteAsync(c, "ALTER TABLE builds ADD COLUMN owner TEXT;", cancellationToken);
        }
    }
}
