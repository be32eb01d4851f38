using System.Data.Common;

namespace Vessel.State;

/// <summary>
/// A node of a cluster as its heartbeat last described it (docs/cluster.md): where its API
/// answers, how many VMs it runs, the memory it has left and the layer builds its home holds
/// (placement prefers a node that has the template's layer).
/// </summary>
public sealed record NodeRecord(string Name, string ApiUrl, int Running, long MemoryAvailableBytes, string BuildsJson, DateTimeOffset UpdatedAt);

public abstract partial class StateStore
{
    /// <summary>Inserts or replaces a node's heartbeat row.</summary>
    public Task PutNodeAsync(NodeRecord node, CancellationToken cancellationToken)
        => NonQueryAsync("""
            INSERT INTO nodes (name, api_url, running, memory_available, builds_json, updated_at) VALUES (@n, @u, @r, @m, @b, @t)
            ON CONFLICT (name) DO UPDATE SET api_url = excluded.api_url, running = excluded.running, memory_available = excluded.memory_available,
                builds_json = excluded.builds_json, updated_at = excluded.updated_at
            """,
            [("@n", node.Name), ("@u", node.ApiUrl), ("@r", node.Running), ("@m", node.MemoryAvailableBytes), ("@b", node.BuildsJson), ("@t", Text(node.UpdatedAt))],
            cancellationToken);

    /// <summary>Every node's last heartbeat, by name.</summary>
    public async Task<IReadOnlyList<NodeRecord>> ListNodesAsync(CancellationToken cancellationToken)
        => await QueryAsync("SELECT name, api_url, running, memory_available, builds_json, updated_at FROM nodes ORDER BY name", [],
            r => new NodeRecord(r.GetString(0), r.GetString(1), r.GetInt32(2), r.GetInt64(3), r.GetString(4), Time(r.GetString(5))), cancellationToken);

    /// <summary>
    /// What a surviving node does when <paramref name="node"/> is declared dead: its running
    /// sandboxes become lost with <paramref name="reason"/> and their rows go (one transaction,
    /// so that several survivors doing it at once lose each sandbox once); its paused rows stay.
    /// Returns the ids it lost. No cancellation: it is part of a cleanup.
    /// </summary>
    public async Task<IReadOnlyList<string>> LoseRunningSandboxesOfAsync(string node, string reason, DateTimeOffset at)
    {
        ArgumentException.ThrowIfNullOrEmpty(node);
        await using DbConnection c = await ConnectAsync(CancellationToken.None);
        await using DbTransaction tx = await c.BeginTransactionAsync(CancellationToken.None);
        var lost = new List<(string Id, string Template)>();
        await using (DbCommand delete = Command(c, "DELETE FROM sandboxes WHERE node = @n AND state = 'running' RETURNING id, template", ("@n", node)))
        {
            delete.Transaction = tx;
            await using DbDataReader r = await delete.ExecuteReaderAsync(CancellationToken.None);
            while (await r.ReadAsync(CancellationToken.None))
            {
                lost.Add((r.GetString(0), r.GetString(1)));
            }
        }
        foreach ((string id, string template) in lost)
        {
            await using DbCommand insert = Command(c, LostUpsert, ("@id", id), ("@t", template), ("@at", Text(at)), ("@r", reason));
            insert.Transaction = tx;
            await insert.ExecuteNonQueryAsync(CancellationToken.None);
        }
        await tx.CommitAsync(CancellationToken.None);
        return lost.Select(l => l.Id).ToList();
    }

    /// <summary>One lost sandbox's record (null: none), for a node asked about a sandbox another node lost.</summary>
    public async Task<LostSandboxRecord?> GetLostSandboxAsync(string id, CancellationToken cancellationToken)
        => (await QueryAsync("SELECT id, template, lost_at, reason FROM lost_sandboxes WHERE id = @id", [("@id", id)], ReadLostSandbox, cancellationToken)).SingleOrDefault();
}
