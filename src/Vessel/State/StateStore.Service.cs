using System.Data.Common;

namespace Vessel.State;

/// <summary>
/// A sandbox that <c>vessel serve</c> manages. <see cref="Layers"/> is its chain of paused disk
/// layers, oldest first (each over the previous one, the first over the template's layer);
/// <see cref="SnapshotDirectory"/> is set while it is paused. <see cref="Node"/> is the daemon that
/// owns it (runs its VM or holds its snapshot, docs/cluster.md); empty in rows of an earlier Vessel.
/// <see cref="RemoteSnapshot"/> is set while it is paused with its snapshot in the cluster's bucket:
/// what was uploaded and the digests to check it against (JSON, <c>Vessel.Service.RemoteSnapshot</c>).
/// </summary>
public sealed record SandboxRecord(
    string Id,
    string Template,
    string State,
    DateTimeOffset StartedAt,
    DateTimeOffset EndAt,
    int TimeoutSeconds,
    bool AutoPause,
    string MetadataJson,
    string EnvJson,
    string LayersJson,
    string? SnapshotDirectory,
    string? WorkDirectory,
    string Node = "",
    string? RemoteSnapshot = null);

/// <summary>An API key: only the SHA-256 of the key is stored; <see cref="Suffix"/> (its last 4 characters) helps a person tell keys apart.</summary>
public sealed record ApiKeyRecord(string Id, string Name, string Hash, string Suffix, DateTimeOffset CreatedAt);

public abstract partial class StateStore
{
    private const string SandboxColumns = "id, template, state, started_at, end_at, timeout_seconds, auto_pause, metadata_json, env_json, layers_json, snapshot_dir, work_dir, node, remote_snapshot";

    /// <summary>Inserts or replaces a sandbox's row (one transaction).</summary>
    public Task PutSandboxAsync(SandboxRecord s, CancellationToken cancellationToken)
        => NonQueryAsync($"""
            INSERT INTO sandboxes ({SandboxColumns}) VALUES (@id, @t, @s, @st, @e, @to, @ap, @m, @env, @l, @sd, @wd, @n, @rs)
            ON CONFLICT (id) DO UPDATE SET template = excluded.template, state = excluded.state, started_at = excluded.started_at, end_at = excluded.end_at,
                timeout_seconds = excluded.timeout_seconds, auto_pause = excluded.auto_pause, metadata_json = excluded.metadata_json,
                env_json = excluded.env_json, layers_json = excluded.layers_json, snapshot_dir = excluded.snapshot_dir, work_dir = excluded.work_dir, node = excluded.node,
                remote_snapshot = excluded.remote_snapshot
            """,
            [("@id", s.Id), ("@t", s.Template), ("@s", s.State), ("@st", Text(s.StartedAt)), ("@e", Text(s.EndAt)), ("@to", s.TimeoutSeconds),
                ("@ap", s.AutoPause ? 1 : 0), ("@m", s.MetadataJson), ("@env", s.EnvJson), ("@l", s.LayersJson), ("@sd", s.SnapshotDirectory), ("@wd", s.WorkDirectory), ("@n", s.Node), ("@rs", s.RemoteSnapshot)],
            cancellationToken);

    /// <summary>Every sandbox row, of every node.</summary>
    public Task<IReadOnlyList<SandboxRecord>> ListSandboxesAsync(CancellationToken cancellationToken)
        => QuerySandboxesAsync($"SELECT {SandboxColumns} FROM sandboxes ORDER BY started_at", [], cancellationToken);

    /// <summary>The rows a daemon on <paramref name="node"/> takes over at start: its own, and those of no node (an earlier Vessel's).</summary>
    public Task<IReadOnlyList<SandboxRecord>> ListSandboxesAsync(string node, CancellationToken cancellationToken)
        => QuerySandboxesAsync($"SELECT {SandboxColumns} FROM sandboxes WHERE node = @n OR node = '' ORDER BY started_at", [("@n", node)], cancellationToken);

    /// <summary>One sandbox's row (null: none), wherever it runs: how a node of a cluster finds a sandbox's owner.</summary>
    public async Task<SandboxRecord?> GetSandboxAsync(string id, CancellationToken cancellationToken)
        => (await QuerySandboxesAsync($"SELECT {SandboxColumns} FROM sandboxes WHERE id = @id", [("@id", id)], cancellationToken)).SingleOrDefault();

    private async Task<IReadOnlyList<SandboxRecord>> QuerySandboxesAsync(string sql, (string Name, object? Value)[] parameters, CancellationToken cancellationToken)
        => await QueryAsync(sql, parameters, ReadSandbox, cancellationToken);

    private static SandboxRecord ReadSandbox(DbDataReader r)
        => new(r.GetString(0), r.GetString(1), r.GetString(2), Time(r.GetString(3)), Time(r.GetString(4)), r.GetInt32(5),
            r.GetInt32(6) != 0, r.GetString(7), r.GetString(8), r.GetString(9), r.IsDBNull(10) ? null : r.GetString(10), r.IsDBNull(11) ? null : r.GetString(11),
            r.GetString(12), r.IsDBNull(13) ? null : r.GetString(13));

    /// <summary>
    /// Moves paused sandbox <paramref name="id"/> from <paramref name="owner"/> to <paramref name="node"/> and
    /// sets its remote snapshot to <paramref name="remote"/>, only if its row still names
    /// <paramref name="owner"/>, is paused and holds <paramref name="expectedRemote"/> (one statement: of
    /// two nodes resuming the same sandbox at once, exactly one gets true). Every resume of a sandbox
    /// whose snapshot is in the bucket goes through here (docs/cluster.md, "Resume elsewhere").
    /// </summary>
    public async Task<bool> TryMovePausedSandboxAsync(string id, string owner, string expectedRemote, string node, string? remote, CancellationToken cancellationToken)
        => await NonQueryAsync("UPDATE sandboxes SET node = @to, remote_snapshot = @r WHERE id = @id AND node = @from AND state = 'paused' AND remote_snapshot = @expected",
            [("@to", node), ("@r", remote), ("@id", id), ("@from", owner), ("@expected", expectedRemote)], cancellationToken) == 1;

    /// <summary>Deletes a sandbox's row. Uses no cancellation token: cleanup must finish.</summary>
    public Task DeleteSandboxAsync(string id) => NonQueryAsync("DELETE FROM sandboxes WHERE id = @id", [("@id", id)], CancellationToken.None);

    public Task PutApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken)
        => NonQueryAsync("INSERT INTO api_keys (id, name, hash, suffix, created_at) VALUES (@id, @n, @h, @s, @t)",
            [("@id", key.Id), ("@n", key.Name), ("@h", key.Hash), ("@s", key.Suffix), ("@t", Text(key.CreatedAt))], cancellationToken);

    public async Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken)
        => await QueryAsync("SELECT id, name, hash, suffix, created_at FROM api_keys ORDER BY created_at", [],
            r => new ApiKeyRecord(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), Time(r.GetString(4))), cancellationToken);

    public async Task<bool> ApiKeyHashExistsAsync(string hash, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbCommand cmd = Command(c, "SELECT 1 FROM api_keys WHERE hash = @h", ("@h", hash));
        return await cmd.ExecuteScalarAsync(cancellationToken) is not null;
    }

    public async Task<bool> DeleteApiKeyAsync(string id, CancellationToken cancellationToken)
        => await NonQueryAsync("DELETE FROM api_keys WHERE id = @id", [("@id", id)], cancellationToken) > 0;
}
