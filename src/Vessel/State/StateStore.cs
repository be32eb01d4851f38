using System.Globalization;
using Microsoft.Data.Sqlite;
using Vessel.Common;

namespace Vessel.State;

/// <summary>A built template: the name users know, what its last successful build produced.</summary>
public sealed record TemplateRecord(
    string Name,
    string SpecJson,
    string FinalHash,
    Guid LayerBuildId,
    long DiskSizeBytes,
    string ConfigJson,
    string? SnapshotDirectory,
    DateTimeOffset BuiltAt);

/// <summary>One phase's cached result: the layer it left and the runtime config after it.</summary>
public sealed record CacheEntry(string Hash, string Phase, Guid LayerBuildId, string ConfigJson, string? SnapshotDirectory, DateTimeOffset CreatedAt);

/// <summary>One run of <c>template build</c>.</summary>
public sealed record BuildRecord(long Id, string Template, string Status, DateTimeOffset StartedAt, DateTimeOffset? FinishedAt, string? Error, string? FinalHash);

/// <summary>
/// Vessel's state in SQLite (docs/ARCHITECTURE.md, "State"): templates, builds and the phase
/// cache. WAL mode so readers never wait for a build; every write is one transaction, and a
/// cache entry is written only after its artifacts are published, so a crash leaves either
/// no entry or a complete one. Safe for several processes (SQLite's file locks, retried
/// until <see cref="BusyTimeout"/>).
/// </summary>
public sealed partial class StateStore
{
    public const int SchemaVersion = 2;
    public static readonly TimeSpan BusyTimeout = TimeSpan.FromSeconds(30);

    private readonly string _connectionString;

    private StateStore(string path)
    {
        Path = path;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            DefaultTimeout = (int)BusyTimeout.TotalSeconds,
            Pooling = false, // no pooled handle keeps the file open after the caller is done
        }.ToString();
    }

    public string Path { get; }

    public static async Task<StateStore> OpenAsync(string path, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        var store = new StateStore(path);
        await using SqliteConnection c = await store.ConnectAsync(cancellationToken);
        await ExecuteAsync(c, "PRAGMA journal_mode=WAL;", cancellationToken);
        await using SqliteTransaction tx = (SqliteTransaction)await c.BeginTransactionAsync(cancellationToken);
        long version = (long)(await ScalarAsync(c, "PRAGMA user_version;", cancellationToken))!;
        if (version > SchemaVersion)
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"state database {path} has schema version {version}; this Vessel knows version {SchemaVersion}. Upgrade Vessel.");
        }
        if (version < 1)
        {
            await ExecuteAsync(c, """
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
                PRAGMA user_version = 1;
                """, cancellationToken);
        }
        if (version < 2)
        {
            await ExecuteAsync(c, ServiceSchema, cancellationToken);
        }
        await AddBuildOwnerColumnAsync(c, cancellationToken);
        await AddLostSandboxesTableAsync(c, cancellationToken);
        await tx.CommitAsync(cancellationToken);
        return store;
    }

    /// <summary>
    /// builds.owner (<see cref="ProcessOwner"/> of the process running the build), added where
    /// missing rather than by a schema version, so it merges with other additive changes.
    /// </summary>
    private static async Task AddBuildOwnerColumnAsync(SqliteConnection c, CancellationToken cancellationToken)
    {
        await using SqliteCommand probe = Command(c, "SELECT COUNT(*) FROM pragma_table_info('builds') WHERE name = 'owner'");
        if ((long)(await probe.ExecuteScalarAsync(cancellationToken))! == 0)
        {
            await ExecuteAsync(c, "ALTER TABLE builds ADD COLUMN owner TEXT;", cancellationToken);
        }
    }

    /// <summary>
    /// Marks 'running' builds whose process is gone (killed, crashed) as failed, saying so;
    /// returns how many. Rows without an owner (older Vessel) are left alone: nothing says whose they are.
    /// </summary>
    public async Task<int> FailBuildsOfDeadOwnersAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        var dead = new List<(long Id, string Owner)>();
        await using (SqliteCommand select = Command(c, "SELECT id, owner FROM builds WHERE status = 'running' AND owner IS NOT NULL"))
        await using (SqliteDataReader r = await select.ExecuteReaderAsync(cancellationToken))
        {
            while (await r.ReadAsync(cancellationToken))
            {
                if (!ProcessOwner.IsAlive(r.GetString(1)))
                {
                    dead.Add((r.GetInt64(0), r.GetString(1)));
                }
            }
        }
        foreach ((long id, string owner) in dead)
        {
            await using SqliteCommand update = Command(c,
                "UPDATE builds SET status = 'failed', error = $e, finished_at = $t WHERE id = $id AND status = 'running'",
                ("$e", $"the process that ran this build ({owner.Replace('-', ' ')}, pid and start time) ended without finishing it: killed or crashed"),
                ("$t", Text(now)), ("$id", id));
            await update.ExecuteNonQueryAsync(cancellationToken);
        }
        return dead.Count;
    }

    public async Task<CacheEntry?> GetCacheEntryAsync(string hash, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c, "SELECT hash, phase, layer_build, config_json, snapshot_dir, created_at FROM cache_entries WHERE hash = $h", ("$h", hash));
        await using SqliteDataReader r = await cmd.ExecuteReaderAsync(cancellationToken);
        return await r.ReadAsync(cancellationToken)
            ? new CacheEntry(r.GetString(0), r.GetString(1), Guid.Parse(r.GetString(2)), r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4), Time(r.GetString(5)))
            : null;
    }

    /// <summary>Publishes a cache entry (replacing one with the same hash, as --no-cache does). Call only after its artifacts are stored.</summary>
    public async Task PutCacheEntryAsync(CacheEntry entry, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteTransaction tx = (SqliteTransaction)await c.BeginTransactionAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c,
            "INSERT OR REPLACE INTO cache_entries (hash, phase, layer_build, config_json, snapshot_dir, created_at) VALUES ($h, $p, $l, $c, $s, $t)",
            ("$h", entry.Hash), ("$p", entry.Phase), ("$l", entry.LayerBuildId.ToString()), ("$c", entry.ConfigJson), ("$s", entry.SnapshotDirectory), ("$t", Text(entry.CreatedAt)));
        cmd.Transaction = tx;
        await cmd.ExecuteNonQueryAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
    }

    public async Task<int> CountCacheEntriesAsync(CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        return (int)(long)(await ScalarAsync(c, "SELECT count(*) FROM cache_entries", cancellationToken))!;
    }

    public async Task<IReadOnlyList<CacheEntry>> ListCacheEntriesAsync(CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c, "SELECT hash, phase, layer_build, config_json, snapshot_dir, created_at FROM cache_entries ORDER BY created_at");
        await using SqliteDataReader r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<CacheEntry>();
        while (await r.ReadAsync(cancellationToken))
        {
            list.Add(new CacheEntry(r.GetString(0), r.GetString(1), Guid.Parse(r.GetString(2)), r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4), Time(r.GetString(5))));
        }
        return list;
    }

    /// <summary>Deletes cache entries by hash, in one transaction (before the layers they name are removed).</summary>
    public async Task DeleteCacheEntriesAsync(IEnumerable<string> hashes, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteTransaction tx = (SqliteTransaction)await c.BeginTransactionAsync(cancellationToken);
        foreach (string hash in hashes)
        {
            await using SqliteCommand cmd = Command(c, "DELETE FROM cache_entries WHERE hash = $h", ("$h", hash));
            cmd.Transaction = tx;
            await cmd.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
    }

    /// <summary>Every layer a cache entry or a template refers to (what a garbage collector must keep).</summary>
    public async Task<IReadOnlySet<Guid>> ReferencedLayersAsync(CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c, "SELECT layer_build FROM cache_entries UNION SELECT layer_build FROM templates");
        await using SqliteDataReader r = await cmd.ExecuteReaderAsync(cancellationToken);
        var set = new HashSet<Guid>();
        while (await r.ReadAsync(cancellationToken))
        {
            set.Add(Guid.Parse(r.GetString(0)));
        }
        return set;
    }

    public async Task PutTemplateAsync(TemplateRecord t, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c, """
            INSERT OR REPLACE INTO templates (name, spec_json, final_hash, layer_build, disk_size, config_json, snapshot_dir, built_at)
            VALUES ($n, $s, $h, $l, $d, $c, $sd, $t)
            """,
            ("$n", t.Name), ("$s", t.SpecJson), ("$h", t.FinalHash), ("$l", t.LayerBuildId.ToString()), ("$d", t.DiskSizeBytes),
            ("$c", t.ConfigJson), ("$sd", t.SnapshotDirectory), ("$t", Text(t.BuiltAt)));
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<TemplateRecord?> GetTemplateAsync(string name, CancellationToken cancellationToken)
        => (await QueryTemplatesAsync("WHERE name = $n", ("$n", name), cancellationToken)) is { Count: > 0 } list ? list[0] : null;

    public Task<IReadOnlyList<TemplateRecord>> ListTemplatesAsync(CancellationToken cancellationToken)
        => QueryTemplatesAsync("ORDER BY name", null, cancellationToken);

    public async Task<bool> DeleteTemplateAsync(string name, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c, "DELETE FROM templates WHERE name = $n", ("$n", name));
        return await cmd.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task<long> StartBuildAsync(string template, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c, "INSERT INTO builds (template, status, started_at, owner) VALUES ($n, 'running', $t, $o) RETURNING id",
            ("$n", template), ("$t", Text(now)), ("$o", ProcessOwner.Current));
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>Records how a build ended. Uses no cancellation token: a cancelled build must still be marked.</summary>
    public async Task FinishBuildAsync(long id, string status, string? error, string? finalHash, DateTimeOffset now)
    {
        await using SqliteConnection c = await ConnectAsync(CancellationToken.None);
        await using SqliteCommand cmd = Command(c, "UPDATE builds SET status = $s, error = $e, final_hash = $h, finished_at = $t WHERE id = $id",
            ("$s", status), ("$e", error), ("$h", finalHash), ("$t", Text(now)), ("$id", id));
        await cmd.ExecuteNonQueryAsync(CancellationToken.None);
    }

    public async Task<IReadOnlyList<BuildRecord>> ListBuildsAsync(string template, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = Command(c, "SELECT id, template, status, started_at, finished_at, error, final_hash FROM builds WHERE template = $n ORDER BY id", ("$n", template));
        await using SqliteDataReader r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<BuildRecord>();
        while (await r.ReadAsync(cancellationToken))
        {
            list.Add(new BuildRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), Time(r.GetString(3)), r.IsDBNull(4) ? null : Time(r.GetString(4)),
                r.IsDBNull(5) ? null : r.GetString(5), r.IsDBNull(6) ? null : r.GetString(6)));
        }
        return list;
    }

    private async Task<IReadOnlyList<TemplateRecord>> QueryTemplatesAsync(string where, (string, object?)? parameter, CancellationToken cancellationToken)
    {
        await using SqliteConnection c = await ConnectAsync(cancellationToken);
        await using SqliteCommand cmd = parameter is { } p
            ? Command(c, $"SELECT name, spec_json, final_hash, layer_build, disk_size, config_json, snapshot_dir, built_at FROM templates {where}", p)
            : Command(c, $"SELECT name, spec_json, final_hash, layer_build, disk_size, config_json, snapshot_dir, built_at FROM templates {where}");
        await using SqliteDataReader r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<TemplateRecord>();
        while (await r.ReadAsync(cancellationToken))
        {
            list.Add(new TemplateRecord(r.GetString(0), r.GetString(1), r.GetString(2), Guid.Parse(r.GetString(3)), r.GetInt64(4), r.GetString(5),
                r.IsDBNull(6) ? null : r.GetString(6), Time(r.GetString(7))));
        }
        return list;
    }

    private async Task<SqliteConnection> ConnectAsync(CancellationToken cancellationToken)
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
            throw new VesselException(VesselErrorReason.Unavailable, $"cannot open the state database {Path}: {e.Message}", e);
        }
    }

    private static SqliteCommand Command(SqliteConnection c, string sql, params (string Name, object? Value)[] parameters)
    {
        SqliteCommand cmd = c.CreateCommand();
#pragma warning disable CA2100 // the SQL is constant; values go through parameters
        cmd.CommandText = sql;
#pragma warning restore CA2100
        foreach ((string name, object? value) in parameters)
        {
            cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        return cmd;
    }

    private static async Task ExecuteAsync(SqliteConnection c, string sql, CancellationToken cancellationToken)
    {
        await using SqliteCommand cmd = Command(c, sql);
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<object?> ScalarAsync(SqliteConnection c, string sql, CancellationToken cancellationToken)
    {
        await using SqliteCommand cmd = Command(c, sql);
        return await cmd.ExecuteScalarAsync(cancellationToken);
    }

    private static string Text(DateTimeOffset t) => t.UtcDateTime.ToString("O", CultureInfo.InvariantCulture);

    private static DateTimeOffset Time(string s) => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
}
