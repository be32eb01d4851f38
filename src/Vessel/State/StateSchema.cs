namespace Vessel.State;

/// <summary>
/// The tables of Vessel's state, written once for both databases: each part is rendered for a
/// <see cref="SqlDialect"/>, which names the types the two spell differently. SQLite applies the
/// parts as its versions 1 to 5 (<see cref="SqliteStateStore"/>); PostgreSQL, which came later,
/// applies the first four together as its version 1, <see cref="Nodes"/> as its version 2 and
/// <see cref="RemoteSnapshot"/> as its version 3 (<see cref="PostgresStateStore"/>). A new column or table is a new part, appended to both.
/// </summary>
internal static class StateSchema
{
    /// <summary>Templates, builds and the phase cache (builds without <c>owner</c>: see <see cref="BuildOwner"/>).</summary>
    public static string Templates(SqlDialect d) => $"""
        CREATE TABLE IF NOT EXISTS templates (
            name TEXT PRIMARY KEY,
            spec_json TEXT NOT NULL,
            final_hash TEXT NOT NULL,
            layer_build TEXT NOT NULL,
            disk_size {d.BigInt} NOT NULL,
            config_json TEXT NOT NULL,
            snapshot_dir TEXT,
            built_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS builds (
            id {d.IdentityKey},
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

    /// <summary>builds.owner: the process that runs a build (an earlier SQLite Vessel added it without a schema version, so SQLite adds it only where missing).</summary>
    public const string BuildOwner = "ALTER TABLE builds ADD COLUMN owner TEXT;";

    /// <summary>What the daemon keeps: its sandboxes and API keys.</summary>
    public const string Service = """
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

    /// <summary>Lost sandboxes (SQLite databases of an earlier Vessel may have the table already, hence IF NOT EXISTS).</summary>
    public const string Lost = """
        CREATE TABLE IF NOT EXISTS lost_sandboxes (
            id TEXT PRIMARY KEY,
            template TEXT NOT NULL,
            lost_at TEXT NOT NULL,
            reason TEXT NOT NULL);
        """;

    /// <summary>The node that owns each sandbox, and the nodes' heartbeats (docs/cluster.md).</summary>
    public static string Nodes(SqlDialect d) => $"""
        ALTER TABLE sandboxes ADD COLUMN node TEXT NOT NULL DEFAULT '';
        CREATE TABLE IF NOT EXISTS nodes (
            name TEXT PRIMARY KEY,
            api_url TEXT NOT NULL,
            running INTEGER NOT NULL,
            memory_available {d.BigInt} NOT NULL,
            builds_json TEXT NOT NULL,
            updated_at TEXT NOT NULL);
        """;

    /// <summary>A paused sandbox's snapshot in the cluster's bucket, with its digests (docs/cluster.md, "Resume elsewhere").</summary>
    public const string RemoteSnapshot = "ALTER TABLE sandboxes ADD COLUMN remote_snapshot TEXT;";
}
