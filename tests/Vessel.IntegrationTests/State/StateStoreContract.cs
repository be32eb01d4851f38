using System.Data.Common;

namespace Vessel.IntegrationTests.State;

/// <summary>
/// What every <see cref="StateStore"/> must do, run against each database by a subclass
/// (<see cref="SqliteStateStoreTests"/>, <see cref="PostgresStateStoreTests"/>). The requirement
/// names PostgreSQL's initdb for both: xunit's skip is per method, and the methods are shared.
/// </summary>
public abstract class StateStoreContract
{
    protected const string PostgresInitdb = "/usr/lib/postgresql/15/bin/initdb";
    private static readonly DateTimeOffset Now = new(2026, 12, 6, 18, 0, 0, TimeSpan.Zero);

    /// <summary>A store on a fresh, empty database.</summary>
    protected abstract Task<StateStore> OpenFreshAsync(CancellationToken ct);

    /// <summary>Opens the database of <paramref name="store"/> again (as another process would).</summary>
    protected abstract Task<StateStore> ReopenAsync(StateStore store, CancellationToken ct);

    [RequiresFact(PostgresInitdb)]
    public async Task Templates_are_put_replaced_listed_by_name_and_deleted()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        var layer = Guid.NewGuid();
        await state.PutTemplateAsync(new TemplateRecord("web", "{}", "h1", layer, 1L << 33, "{\"a\":1}", null, Now), CancellationToken.None);
        await state.PutTemplateAsync(new TemplateRecord("api", "{}", "h2", layer, 10, "{}", "/snap", Now), CancellationToken.None);
        await state.PutTemplateAsync(new TemplateRecord("web", "{\"v\":2}", "h3", layer, 1L << 34, "{}", "/s2", Now.AddMinutes(1)), CancellationToken.None);

        StateStore again = await ReopenAsync(state, CancellationToken.None);
        Assert.Equal(["api", "web"], (await again.ListTemplatesAsync(CancellationToken.None)).Select(t => t.Name));
        Assert.Equal(new TemplateRecord("web", "{\"v\":2}", "h3", layer, 1L << 34, "{}", "/s2", Now.AddMinutes(1)), await again.GetTemplateAsync("web", CancellationToken.None));
        Assert.Null(await again.GetTemplateAsync("nope", CancellationToken.None));
        Assert.True(await again.DeleteTemplateAsync("web", CancellationToken.None));
        Assert.False(await again.DeleteTemplateAsync("web", CancellationToken.None));
        Assert.Equal("api", Assert.Single(await again.ListTemplatesAsync(CancellationToken.None)).Name);
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Builds_get_increasing_ids_and_keep_how_they_ended()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        long first = await state.StartBuildAsync("web", Now, CancellationToken.None);
        long second = await state.StartBuildAsync("web", Now.AddSeconds(1), CancellationToken.None);
        await state.StartBuildAsync("other", Now, CancellationToken.None);
        Assert.True(second > first);
        await state.FinishBuildAsync(first, "failed", "step 2 exited 1", null, Now.AddSeconds(5));
        await state.FinishBuildAsync(second, "succeeded", null, "hash", Now.AddSeconds(6));
        IReadOnlyList<BuildRecord> builds = await state.ListBuildsAsync("web", CancellationToken.None);
        Assert.Equal(new BuildRecord(first, "web", "failed", Now, Now.AddSeconds(5), "step 2 exited 1", null), builds[0]);
        Assert.Equal(new BuildRecord(second, "web", "succeeded", Now.AddSeconds(1), Now.AddSeconds(6), null, "hash"), builds[1]);
        // This process runs the remaining one: it is alive, so nothing is failed.
        Assert.Equal(0, await state.FailBuildsOfDeadOwnersAsync(Now, CancellationToken.None));
        Assert.Equal("running", Assert.Single(await state.ListBuildsAsync("other", CancellationToken.None)).Status);
        await Assert.ThrowsAnyAsync<DbException>(() => state.FinishBuildAsync(first, "exploded", null, null, Now));
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Cache_entries_are_replaced_by_hash_and_their_layers_with_templates_are_referenced()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        Guid a = Guid.NewGuid(), b = Guid.NewGuid(), t = Guid.NewGuid();
        await state.PutCacheEntryAsync(new CacheEntry("h1", "base", a, "{}", null, Now), CancellationToken.None);
        await state.PutCacheEntryAsync(new CacheEntry("h2", "step", a, "{}", "/snap", Now.AddSeconds(1)), CancellationToken.None);
        await state.PutCacheEntryAsync(new CacheEntry("h1", "base", b, "{\"x\":1}", null, Now.AddSeconds(2)), CancellationToken.None);
        await state.PutTemplateAsync(new TemplateRecord("web", "{}", "h2", t, 1, "{}", null, Now), CancellationToken.None);

        Assert.Equal(2, await state.CountCacheEntriesAsync(CancellationToken.None));
        Assert.Equal(new CacheEntry("h1", "base", b, "{\"x\":1}", null, Now.AddSeconds(2)), await state.GetCacheEntryAsync("h1", CancellationToken.None));
        Assert.Equal(["h2", "h1"], (await state.ListCacheEntriesAsync(CancellationToken.None)).Select(e => e.Hash));
        Assert.Equal(new HashSet<Guid> { a, b, t }, (await state.ReferencedLayersAsync(CancellationToken.None)).ToHashSet());
        await state.DeleteCacheEntriesAsync(["h1", "h2", "missing"], CancellationToken.None);
        Assert.Equal(0, await state.CountCacheEntriesAsync(CancellationToken.None));
        Assert.Null(await state.GetCacheEntryAsync("h1", CancellationToken.None));
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Sandboxes_are_upserted_by_id_listed_by_start_and_deleted()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        var running = new SandboxRecord("sbx-b", "web", "running", Now.AddSeconds(1), Now.AddMinutes(5), 300, AutoPause: true, "{\"k\":\"v\"}", "{}", "[]", null, "/w/b");
        await state.PutSandboxAsync(running, CancellationToken.None);
        await state.PutSandboxAsync(new SandboxRecord("sbx-a", "web", "running", Now, Now.AddMinutes(5), 300, false, "{}", "{}", "[]", null, null), CancellationToken.None);
        SandboxRecord paused = running with { State = "paused", LayersJson = "[\"l1\"]", SnapshotDirectory = "/snap/b" };
        await state.PutSandboxAsync(paused, CancellationToken.None);

        IReadOnlyList<SandboxRecord> list = await (await ReopenAsync(state, CancellationToken.None)).ListSandboxesAsync(CancellationToken.None);
        Assert.Equal(["sbx-a", "sbx-b"], list.Select(s => s.Id));
        Assert.Equal(paused, list[1]);
        Assert.False(list[0].AutoPause);
        await Assert.ThrowsAnyAsync<DbException>(() => state.PutSandboxAsync(running with { State = "exploded" }, CancellationToken.None));
        await state.DeleteSandboxAsync("sbx-a");
        Assert.Equal("sbx-b", Assert.Single(await state.ListSandboxesAsync(CancellationToken.None)).Id);
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Rows_name_their_node_and_a_daemon_takes_over_only_its_own_and_those_of_no_node()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        SandboxRecord Row(string id, string node, string st = "running") => new(id, "web", st, Now, Now.AddMinutes(5), 300, false, "{}", "{}", "[]", null, null, node);
        await state.PutSandboxAsync(Row("sbx-a1", "a"), CancellationToken.None);
        await state.PutSandboxAsync(Row("sbx-b1", "b"), CancellationToken.None);
        await state.PutSandboxAsync(Row("sbx-old", ""), CancellationToken.None);

        StateStore again = await ReopenAsync(state, CancellationToken.None);
        Assert.Equal(["sbx-a1", "sbx-old"], (await again.ListSandboxesAsync("a", CancellationToken.None)).Select(r => r.Id).Order());
        Assert.Equal(Row("sbx-b1", "b"), await again.GetSandboxAsync("sbx-b1", CancellationToken.None));
        Assert.Null(await again.GetSandboxAsync("sbx-none", CancellationToken.None));
        Assert.Equal(3, (await again.ListSandboxesAsync(CancellationToken.None)).Count);
    }

    [RequiresFact(PostgresInitdb)]
    public async Task A_dead_node_loses_its_running_sandboxes_once_with_the_reason_and_keeps_its_paused_ones()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        SandboxRecord Row(string id, string node, string st) => new(id, "web", st, Now, Now.AddMinutes(5), 300, false, "{}", "{}", "[]", null, null, node);
        await state.PutSandboxAsync(Row("sbx-run", "a", "running"), CancellationToken.None);
        await state.PutSandboxAsync(Row("sbx-paused", "a", "paused"), CancellationToken.None);
        await state.PutSandboxAsync(Row("sbx-other", "b", "running"), CancellationToken.None);

        Assert.Equal(["sbx-run"], await state.LoseRunningSandboxesOfAsync("a", "node a died", Now));
        Assert.Empty(await state.LoseRunningSandboxesOfAsync("a", "seen again by another survivor", Now.AddSeconds(1)));
        Assert.Equal(["sbx-other", "sbx-paused"], (await state.ListSandboxesAsync(CancellationToken.None)).Select(r => r.Id).Order());
        Assert.Equal(new LostSandboxRecord("sbx-run", "web", Now, "node a died"), await state.GetLostSandboxAsync("sbx-run", CancellationToken.None));
        Assert.Null(await state.GetLostSandboxAsync("sbx-paused", CancellationToken.None));
    }

    [RequiresFact(PostgresInitdb)]
    public async Task A_paused_sandbox_with_a_remote_snapshot_moves_to_exactly_one_node_and_only_while_its_row_is_unchanged()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        SandboxRecord paused = new("sbx-p", "web", "paused", Now, Now.AddMinutes(5), 300, false, "{}", "{}", "[\"l1\"]", "/snap/p", null, "a", "{\"pause\":1}");
        await state.PutSandboxAsync(paused, CancellationToken.None);
        await state.PutSandboxAsync(paused with { Id = "sbx-r", State = "running", RemoteSnapshot = null }, CancellationToken.None);
        StateStore again = await ReopenAsync(state, CancellationToken.None);
        Assert.Equal(paused, await again.GetSandboxAsync("sbx-p", CancellationToken.None));

        // Two nodes race for it: the row changes once.
        bool[] won = await Task.WhenAll(
            state.TryMovePausedSandboxAsync("sbx-p", "a", "{\"pause\":1}", "b", "{\"pause\":1}", CancellationToken.None),
            again.TryMovePausedSandboxAsync("sbx-p", "a", "{\"pause\":1}", "c", "{\"pause\":1}", CancellationToken.None));
        Assert.Equal(1, won.Count(w => w));
        string winner = won[0] ? "b" : "c";
        Assert.Equal(paused with { Node = winner }, await state.GetSandboxAsync("sbx-p", CancellationToken.None));
        // The owner's own resume clears the remote snapshot; an older pause's or a running row never moves.
        Assert.False(await state.TryMovePausedSandboxAsync("sbx-p", winner, "{\"pause\":0}", winner, null, CancellationToken.None));
        Assert.False(await state.TryMovePausedSandboxAsync("sbx-r", "a", "{\"pause\":1}", "b", null, CancellationToken.None));
        Assert.True(await state.TryMovePausedSandboxAsync("sbx-p", winner, "{\"pause\":1}", winner, null, CancellationToken.None));
        Assert.Null((await state.GetSandboxAsync("sbx-p", CancellationToken.None))!.RemoteSnapshot);
        Assert.False(await state.TryMovePausedSandboxAsync("sbx-p", winner, "{\"pause\":1}", "a", null, CancellationToken.None));
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Node_heartbeats_are_upserted_by_name()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        await state.PutNodeAsync(new NodeRecord("b", "http://10.0.0.2:7080/", 1, 1L << 33, "[]", Now), CancellationToken.None);
        await state.PutNodeAsync(new NodeRecord("a", "http://10.0.0.1:7080/", 0, 1L << 32, "[]", Now), CancellationToken.None);
        await state.PutNodeAsync(new NodeRecord("b", "http://10.0.0.2:7080/", 3, 1L << 30, "[\"x\"]", Now.AddSeconds(2)), CancellationToken.None);
        Assert.Equal(
            [new NodeRecord("a", "http://10.0.0.1:7080/", 0, 1L << 32, "[]", Now), new NodeRecord("b", "http://10.0.0.2:7080/", 3, 1L << 30, "[\"x\"]", Now.AddSeconds(2))],
            await (await ReopenAsync(state, CancellationToken.None)).ListNodesAsync(CancellationToken.None));
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Api_keys_are_found_by_hash_and_a_second_key_with_the_same_hash_is_refused()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        await state.PutApiKeyAsync(new ApiKeyRecord("k1", "ci", "hash-1", "abcd", Now), CancellationToken.None);
        Assert.True(await state.ApiKeyHashExistsAsync("hash-1", CancellationToken.None));
        Assert.False(await state.ApiKeyHashExistsAsync("hash-2", CancellationToken.None));
        await Assert.ThrowsAnyAsync<DbException>(() => state.PutApiKeyAsync(new ApiKeyRecord("k2", "dup", "hash-1", "abcd", Now), CancellationToken.None));
        Assert.Equal(new ApiKeyRecord("k1", "ci", "hash-1", "abcd", Now), Assert.Single(await state.ListApiKeysAsync(CancellationToken.None)));
        Assert.True(await state.DeleteApiKeyAsync("k1", CancellationToken.None));
        Assert.False(await state.ApiKeyHashExistsAsync("hash-1", CancellationToken.None));
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Lost_sandboxes_are_kept_with_their_reason_until_they_are_older_than_the_cutoff()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        await state.PutLostSandboxAsync(new LostSandboxRecord("sbx-old", "t", Now.AddDays(-2), "old"));
        await state.PutLostSandboxAsync(new LostSandboxRecord("sbx-new", "t", Now.AddHours(-1), "first"));
        await state.PutLostSandboxAsync(new LostSandboxRecord("sbx-new", "t", Now, "it was running"));
        LostSandboxRecord kept = Assert.Single(await state.ListLostSandboxesAsync(Now.AddDays(-1), CancellationToken.None));
        Assert.Equal(new LostSandboxRecord("sbx-new", "t", Now, "it was running"), kept);
        Assert.Single(await state.ListLostSandboxesAsync(DateTimeOffset.MinValue, CancellationToken.None)); // pruned, not only filtered
        Assert.True(await state.DeleteLostSandboxAsync("sbx-new", CancellationToken.None));
        Assert.Empty(await state.ListLostSandboxesAsync(DateTimeOffset.MinValue, CancellationToken.None));
    }

    [RequiresFact(PostgresInitdb)]
    public async Task Opening_an_up_to_date_database_again_keeps_its_rows()
    {
        StateStore state = await OpenFreshAsync(CancellationToken.None);
        await state.PutApiKeyAsync(new ApiKeyRecord("k1", "ci", "hash-1", "abcd", Now), CancellationToken.None);
        StateStore again = await ReopenAsync(await ReopenAsync(state, CancellationToken.None), CancellationToken.None);
        Assert.Single(await again.ListApiKeysAsync(CancellationToken.None));
    }
}
