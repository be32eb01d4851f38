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
    public Task PutLostSandboxAsync(LostSandboxRecord lost)
        => NonQueryAsync(LostUpsert, [("@id", lost.Id), ("@t", lost.Template), ("@at", Text(lost.LostAt)), ("@r", lost.Reason)], CancellationToken.None);

    /// <summary>Lost sandboxes recorded at or after <paramref name="since"/>; older records are deleted.</summary>
    public async Task<IReadOnlyList<LostSandboxRecord>> ListLostSandboxesAsync(DateTimeOffset since, CancellationToken cancellationToken)
    {
        await NonQueryAsync("DELETE FROM lost_sandboxes WHERE lost_at < @since", [("@since", Text(since))], cancellationToken);
        return await QueryAsync("SELECT id, template, lost_at, reason FROM lost_sandboxes ORDER BY lost_at", [], ReadLostSandbox, cancellationToken);
    }

    private static LostSandboxRecord ReadLostSandbox(DbDataReader r) => new(r.GetString(0), r.GetString(1), Time(r.GetString(2)), r.GetString(3));

    /// <summary>Forgets a lost sandbox; false when there was no record.</summary>
    public async Task<bool> DeleteLostSandboxAsync(string id, CancellationToken cancellationToken)
        => await NonQueryAsync("DELETE FROM lost_sandboxes WHERE id = @id", [("@id", id)], cancellationToken) > 0;
}
