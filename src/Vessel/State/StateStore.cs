using System.Data.Common;
using System.Globalization;
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
/// Vessel's state (docs/ARCHITECTURE.md, "State"): templates, builds, the phase cache, the
/// daemon's sandboxes and keys. One interface, two databases: SQLite in the home
/// (<see cref="SqliteStateStore"/>, the default) and PostgreSQL (<see cref="PostgresStateStore"/>,
/// shared by the nodes of a cluster), chosen by <see cref="OpenAsync"/> from the location
/// (<see cref="VesselSettings.StateLocation"/>). The queries here are the SQL both speak
/// (named parameters, <c>INSERT ... ON CONFLICT DO UPDATE</c>, <c>RETURNING</c>); each database
/// brings its connection and its versioned migrations, applied on open. Every write is one
/// statement or one transaction, and a cache entry is written only after its artifacts are
/// published, so a crash leaves either no entry or a complete one.
/// </summary>
public abstract partial class StateStore
{
    /// <summary>The location of the state (a file path or a <c>postgres://</c> URL), for messages.</summary>
    public abstract string Location { get; }

    /// <summary>
    /// Opens the state at <paramref name="location"/> and brings its schema up to date: a
    /// PostgreSQL URL or connection string (<see cref="PostgresStateStore.IsLocation"/>) or
    /// else the path of a SQLite file.
    /// </summary>
    public static async Task<StateStore> OpenAsync(string location, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(location);
        StateStore store = PostgresStateStore.IsLocation(location)
            ? PostgresStateStore.Create(location)
            : SqliteStateStore.Create(location);
        await store.MigrateAsync(cancellationToken);
        return store;
    }

    /// <summary>Applies the migrations this database lacks (one transaction; refuses a newer schema than this Vessel knows).</summary>
    private protected abstract Task MigrateAsync(CancellationToken cancellationToken);

    /// <summary>An open connection; failures become <see cref="VesselErrorReason.Unavailable"/> naming the database.</summary>
    private protected abstract Task<DbConnection> ConnectAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The owner a build row records: this host and <see cref="ProcessOwner.Current"/>, so that on a
    /// shared database a node judges only its own processes.
    /// </summary>
    internal static string BuildOwner => $"{Environment.MachineName}/{ProcessOwner.Current}";

    /// <summary>Whether the build owner <paramref name="owner"/> is a process of this host that has ended (older rows name no host: this one).</summary>
    private static bool IsDeadLocalOwner(string owner)
    {
        int slash = owner.LastIndexOf('/');
        if (slash >= 0 && !string.Equals(owner[..slash], Environment.MachineName, StringComparison.Ordinal))
        {
            return false;
        }
        return !ProcessOwner.IsAlive(owner[(slash + 1)..]);
    }

    /// <summary>
    /// Marks 'running' builds whose process is gone (killed, crashed) as failed, saying so;
    /// returns how many. Rows without an owner (older Vessel) are left alone: nothing says whose they are.
    /// </summary>
    public async Task<int> FailBuildsOfDeadOwnersAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        var dead = new List<(long Id, string Owner)>();
        await using (DbCommand select = Command(c, "SELECT id, owner FROM builds WHERE status = 'running' AND owner IS NOT NULL"))
        await using (DbDataReader r = await select.ExecuteReaderAsync(cancellationToken))
        {
            while (await r.ReadAsync(cancellationToken))
            {
                if (IsDeadLocalOwner(r.GetString(1)))
                {
                    dead.Add((r.GetInt64(0), r.GetString(1)));
                }
            }
        }
        foreach ((long id, string owner) in dead)
        {
            await using DbCommand update = Command(c,
                "UPDATE builds SET status = 'failed', error = @e, finished_at = @t WHERE id = @id AND status = 'running'",
                ("@e", $"the process that ran this build ({owner}: host, pid-start time) ended without finishing it: killed or crashed"),
                ("@t", Text(now)), ("@id", id));
            await update.ExecuteNonQueryAsync(cancellationToken);
        }
        return dead.Count;
    }

    private const string CacheEntryColumns = "hash, phase, layer_build, config_json, snapshot_dir, created_at";

    public async Task<CacheEntry?> GetCacheEntryAsync(string hash, CancellationToken cancellationToken)
        => (await QueryAsync($"SELECT {CacheEntryColumns} FROM cache_entries WHERE hash = @h", [("@h", hash)], ReadCacheEntry, cancellationToken)).SingleOrDefault();

    /// <summary>Publishes a cache entry (replacing one with the same hash, as --no-cache does). Call only after its artifacts are stored.</summary>
    public async Task PutCacheEntryAsync(CacheEntry entry, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbTransaction tx = await c.BeginTransactionAsync(cancellationToken);
        await using DbCommand cmd = Command(c,
            """
            INSERT INTO cache_entries (hash, phase, layer_build, config_json, snapshot_dir, created_at) VALUES (@h, @p, @l, @c, @s, @t)
            ON CONFLICT (hash) DO UPDATE SET phase = excluded.phase, layer_build = excluded.layer_build, config_json = excluded.config_json,
                snapshot_dir = excluded.snapshot_dir, created_at = excluded.created_at
            """,
            ("@h", entry.Hash), ("@p", entry.Phase), ("@l", entry.LayerBuildId.ToString()), ("@c", entry.ConfigJson), ("@s", entry.SnapshotDirectory), ("@t", Text(entry.CreatedAt)));
        cmd.Transaction = tx;
        await cmd.ExecuteNonQueryAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
    }

    public async Task<int> CountCacheEntriesAsync(CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        return (int)(long)(await ScalarAsync(c, "SELECT count(*) FROM cache_entries", cancellationToken))!;
    }

    public async Task<IReadOnlyList<CacheEntry>> ListCacheEntriesAsync(CancellationToken cancellationToken)
        => await QueryAsync($"SELECT {CacheEntryColumns} FROM cache_entries ORDER BY created_at", [], ReadCacheEntry, cancellationToken);

    private static CacheEntry ReadCacheEntry(DbDataReader r)
        => new(r.GetString(0), r.GetString(1), Guid.Parse(r.GetString(2)), r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4), Time(r.GetString(5)));

    /// <summary>Deletes cache entries by hash, in one transaction (before the layers they name are removed).</summary>
    public async Task DeleteCacheEntriesAsync(IEnumerable<string> hashes, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbTransaction tx = await c.BeginTransactionAsync(cancellationToken);
        foreach (string hash in hashes)
        {
            await using DbCommand cmd = Command(c, "DELETE FROM cache_entries WHERE hash = @h", ("@h", hash));
            cmd.Transaction = tx;
            await cmd.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
    }

    /// <summary>Every layer a cache entry or a template refers to (what a garbage collector must keep).</summary>
    public async Task<IReadOnlySet<Guid>> ReferencedLayersAsync(CancellationToken cancellationToken)
        => (await QueryAsync("SELECT layer_build FROM cache_entries UNION SELECT layer_build FROM templates", [], r => Guid.Parse(r.GetString(0)), cancellationToken)).ToHashSet();

    private const string TemplateColumns = "name, spec_json, final_hash, layer_build, disk_size, config_json, snapshot_dir, built_at";

    public Task PutTemplateAsync(TemplateRecord t, CancellationToken cancellationToken)
        => NonQueryAsync($"""
            INSERT INTO templates ({TemplateColumns})
            VALUES (@n, @s, @h, @l, @d, @c, @sd, @t)
            ON CONFLICT (name) DO UPDATE SET spec_json = excluded.spec_json, final_hash = excluded.final_hash, layer_build = excluded.layer_build,
                disk_size = excluded.disk_size, config_json = excluded.config_json, snapshot_dir = excluded.snapshot_dir, built_at = excluded.built_at
            """,
            [("@n", t.Name), ("@s", t.SpecJson), ("@h", t.FinalHash), ("@l", t.LayerBuildId.ToString()), ("@d", t.DiskSizeBytes),
                ("@c", t.ConfigJson), ("@sd", t.SnapshotDirectory), ("@t", Text(t.BuiltAt))],
            cancellationToken);

    public async Task<TemplateRecord?> GetTemplateAsync(string name, CancellationToken cancellationToken)
        => (await QueryAsync($"SELECT {TemplateColumns} FROM templates WHERE name = @n", [("@n", name)], ReadTemplate, cancellationToken)).SingleOrDefault();

    public async Task<IReadOnlyList<TemplateRecord>> ListTemplatesAsync(CancellationToken cancellationToken)
        => await QueryAsync($"SELECT {TemplateColumns} FROM templates ORDER BY name", [], ReadTemplate, cancellationToken);

    private static TemplateRecord ReadTemplate(DbDataReader r)
        => new(r.GetString(0), r.GetString(1), r.GetString(2), Guid.Parse(r.GetString(3)), r.GetInt64(4), r.GetString(5),
            r.IsDBNull(6) ? null : r.GetString(6), Time(r.GetString(7)));

    public async Task<bool> DeleteTemplateAsync(string name, CancellationToken cancellationToken)
        => await NonQueryAsync("DELETE FROM templates WHERE name = @n", [("@n", name)], cancellationToken) > 0;

    public async Task<long> StartBuildAsync(string template, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbCommand cmd = Command(c, "INSERT INTO builds (template, status, started_at, owner) VALUES (@n, 'running', @t, @o) RETURNING id",
            ("@n", template), ("@t", Text(now)), ("@o", BuildOwner));
        return (long)(await cmd.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>Records how a build ended. Uses no cancellation token: a cancelled build must still be marked.</summary>
    public Task FinishBuildAsync(long id, string status, string? error, string? finalHash, DateTimeOffset now)
        => NonQueryAsync("UPDATE builds SET status = @s, error = @e, final_hash = @h, finished_at = @t WHERE id = @id",
            [("@s", status), ("@e", error), ("@h", finalHash), ("@t", Text(now)), ("@id", id)], CancellationToken.None);

    public async Task<IReadOnlyList<BuildRecord>> ListBuildsAsync(string template, CancellationToken cancellationToken)
        => await QueryAsync("SELECT id, template, status, started_at, finished_at, error, final_hash FROM builds WHERE template = @n ORDER BY id", [("@n", template)],
            r => new BuildRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), Time(r.GetString(3)), r.IsDBNull(4) ? null : Time(r.GetString(4)),
                r.IsDBNull(5) ? null : r.GetString(5), r.IsDBNull(6) ? null : r.GetString(6)),
            cancellationToken);

    /// <summary>Runs one statement on a connection of its own; returns how many rows it changed.</summary>
    private async Task<int> NonQueryAsync(string sql, (string Name, object? Value)[] parameters, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbCommand cmd = Command(c, sql, parameters);
        return await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Every row of one query (on a connection of its own), each made by <paramref name="read"/>.</summary>
    private async Task<List<T>> QueryAsync<T>(string sql, (string Name, object? Value)[] parameters, Func<DbDataReader, T> read, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbCommand cmd = Command(c, sql, parameters);
        await using DbDataReader r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<T>();
        while (await r.ReadAsync(cancellationToken))
        {
            list.Add(read(r));
        }
        return list;
    }

    private protected static DbCommand Command(DbConnection c, string sql, params (string Name, object? Value)[] parameters)
    {
        DbCommand cmd = c.CreateCommand();
#pragma warning disable CA2100 // the SQL is constant; values go through parameters
        cmd.CommandText = sql;
#pragma warning restore CA2100
        foreach ((string name, object? value) in parameters)
        {
            DbParameter p = cmd.CreateParameter();
            p.ParameterName = name;
            p.Value = value ?? DBNull.Value;
            cmd.Parameters.Add(p);
        }
        return cmd;
    }

    private protected static async Task ExecuteAsync(DbConnection c, string sql, CancellationToken cancellationToken)
    {
        await using DbCommand cmd = Command(c, sql);
        await cmd.ExecuteNonQueryAsync(cancellationToken);
    }

    private protected static async Task<object?> ScalarAsync(DbConnection c, string sql, CancellationToken cancellationToken)
    {
        await using DbCommand cmd = Command(c, sql);
        return await cmd.ExecuteScalarAsync(cancellationToken);
    }

    private protected static string Text(DateTimeOffset t) => t.UtcDateTime.ToString("O", CultureInfo.InvariantCulture);

    private static DateTimeOffset Time(string s) => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
}
