using System.Data.Common;

namespace Vessel.State;

/// <summary>
/// A sandbox the daemon could not keep (it was running when a daemon stopped, or its pause
/// failed): kept for a while so that a client asking for it learns why it is gone.
/// </summary>
public sealed record LostSandboxRecord(string Id, string Template, DateTimeOffset LostAt, string Reason);

public abstract partial class StateStore
{
    /// <summary>Records a lost sandbox (@id, @t, @at, @r), replacing an older record of the same id.</summary>
    private const string LostUpsert = """
        INSERT INTO lost_sandboxes (id, template, lost_at, reason) VALUES (@id, @t, @at, @r)
        ON CONFLICT (id) DO UPDATE SET template = excluded.template, lost_at = excluded.lost_at, reason = excluded.reason
        """;

    /// <summary>Records a lost sandbox (replacing an older record of the same id). No cancellation: it is part of a cleanup.</summary>
    public async Task PutLostSandboxAsync(LostSandboxRecord lost)
    {
        await using DbConnection c = await ConnectAsync(CancellationToken.None);
        await using DbCommand cmd = Command(c, LostUpsert,
            ("@id", lost.Id), ("@t", lost.Template), ("@at", Text(lost.LostAt)), ("@r", lost.Reason));
        await cmd.ExecuteNonQueryAsync(CancellationToken.None);
    }

    /// <summary>Lost sandboxes recorded at or after <paramref name="since"/>; older records are deleted.</summary>
    public async Task<IReadOnlyList<LostSandboxRecord>> ListLostSandboxesAsync(DateTimeOffset since, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using (DbCommand prune = Command(c, "DELETE FROM lost_sandboxes WHERE lost_at < @since", ("@since", Text(since))))
        {
            await prune.ExecuteNonQueryAsync(cancellationToken);
        }
        await using DbCommand cmd = Command(c, "SELECT id, template, lost_at, reason FROM lost_sandboxes ORDER BY lost_at");
        await using DbDataReader r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<LostSandboxRecord>();
        while (await r.ReadAsync(cancellationToken))
        {
            list.Add(new LostSandboxRecord(r.GetString(0), r.GetString(1), Time(r.GetString(2)), r.GetString(3)));
        }
        return list;
    }

    /// <summary>Forgets a lost sandbox; false when there was no record.</summary>
    public async Task<bool> DeleteLostSandboxAsync(string id, CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbCommand cmd = Command(c, "DELETE FROM lost_sandboxes WHERE id = @id", ("@id", id));
        return await cmd.ExecuteNonQueryAsync(cancellationToken) > 0;
    }
}
