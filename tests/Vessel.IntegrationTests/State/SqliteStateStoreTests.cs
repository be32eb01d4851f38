using Microsoft.Data.Sqlite;

namespace Vessel.IntegrationTests.State;

/// <summary>The state contract on SQLite, and its migrations from older files.</summary>
public sealed class SqliteStateStoreTests : StateStoreContract, IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-state-");

    public void Dispose() => _dir.Dispose();

    protected override Task<StateStore> OpenFreshAsync(CancellationToken ct) => StateStore.OpenAsync(_dir.Combine($"{Guid.NewGuid():N}.db"), ct);

    protected override Task<StateStore> ReopenAsync(StateStore store, CancellationToken ct) => StateStore.OpenAsync(store.Location, ct);

    /// <summary>Runs <paramref name="sql"/> on the SQLite file <paramref name="path"/> (made if missing) on a connection of its own; the first column of its first row.</summary>
    private static async Task<object?> SqlAsync(string path, string sql)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Pooling=false");
        await connection.OpenAsync();
        await using SqliteCommand command = connection.CreateCommand();
        command.CommandText = sql;
        return await command.ExecuteScalarAsync();
    }

    [Fact]
    public async Task A_version_2_file_of_an_earlier_vessel_is_migrated_keeping_its_rows()
    {
        string path = _dir.Combine("v2.db");
        await SqlAsync(path, """
                CREATE TABLE templates (name TEXT PRIMARY KEY, spec_json TEXT NOT NULL, final_hash TEXT NOT NULL, layer_build TEXT NOT NULL,
                    disk_size INTEGER NOT NULL, config_json TEXT NOT NULL, snapshot_dir TEXT, built_at TEXT NOT NULL);
                CREATE TABLE builds (id INTEGER PRIMARY KEY AUTOINCREMENT, template TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL,
                    finished_at TEXT, error TEXT, final_hash TEXT);
                CREATE TABLE cache_entries (hash TEXT PRIMARY KEY, phase TEXT NOT NULL, layer_build TEXT NOT NULL, config_json TEXT NOT NULL,
                    snapshot_dir TEXT, created_at TEXT NOT NULL);
                CREATE TABLE sandboxes (id TEXT PRIMARY KEY, template TEXT NOT NULL, state TEXT NOT NULL, started_at TEXT NOT NULL, end_at TEXT NOT NULL,
                    timeout_seconds INTEGER NOT NULL, auto_pause INTEGER NOT NULL, metadata_json TEXT NOT NULL, env_json TEXT NOT NULL,
                    layers_json TEXT NOT NULL, snapshot_dir TEXT, work_dir TEXT);
                CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, suffix TEXT NOT NULL, created_at TEXT NOT NULL);
                INSERT INTO builds (template, status, started_at) VALUES ('old', 'running', '2026-01-01T00:00:00.0000000Z');
                PRAGMA user_version = 2;
                """);
        StateStore state = await StateStore.OpenAsync(path, CancellationToken.None);
        Assert.Equal("running", Assert.Single(await state.ListBuildsAsync("old", CancellationToken.None)).Status);
        // The row without an owner (older Vessel) is left alone; lost_sandboxes exists now.
        Assert.Equal(0, await state.FailBuildsOfDeadOwnersAsync(DateTimeOffset.UtcNow, CancellationToken.None));
        Assert.Empty(await state.ListLostSandboxesAsync(DateTimeOffset.MinValue, CancellationToken.None));
        Assert.Equal((long)SqliteStateStore.SchemaVersion, (long)(await SqlAsync(path, "PRAGMA user_version"))!);
    }

    [Fact]
    public async Task A_file_of_a_newer_schema_is_refused_naming_both_versions()
    {
        string path = _dir.Combine("new.db");
        await SqlAsync(path, "PRAGMA user_version = 99");
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => StateStore.OpenAsync(path, CancellationToken.None));
        Assert.Equal(VesselErrorReason.Unsupported, e.Reason);
        Assert.Contains("schema version 99", e.Message, StringComparison.Ordinal);
    }
}
