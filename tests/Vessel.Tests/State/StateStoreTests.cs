using Microsoft.Data.Sqlite;

namespace Vessel.Tests.State;

/// <summary>
/// What every state store backend must do, written once: a backend's test class derives from this
/// and opens a fresh, empty store in <see cref="OpenStoreAsync"/> (<see cref="SqliteStateStoreTests"/>
/// for SQLite). Backend-specific behaviour (files, schema versions) goes in the derived class.
/// </summary>
public abstract class StateStoreTests : IAsyncLifetime
{
    protected static readonly DateTimeOffset T0 = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

    protected CancellationToken Ct { get; } = CancellationToken.None;

    protected StateStore Store { get; private set; } = null!;

    /// <summary>A fresh, empty store of this backend.</summary>
    protected abstract Task<StateStore> OpenStoreAsync(CancellationToken cancellationToken);

    public virtual async Task InitializeAsync() => Store = await OpenStoreAsync(Ct);

    public virtual Task DisposeAsync() => Task.CompletedTask;

    protected static CacheEntry Entry(string hash, Guid layer, string? snapshot = null)
        => new(hash, "step", layer, "{\"workdir\":\"/\"}", snapshot, T0);

    protected static TemplateRecord TemplateNamed(string name, Guid layer)
        => new(name, "{\"name\":\"" + name + "\"}", "final-" + name, layer, 64L << 20, "{}", "/snapshots/" + name, T0.AddMinutes(1));

    [Fact]
    public async Task Cache_entries_come_back_as_written_and_a_put_replaces_the_entry_of_that_hash()
    {
        Guid layer = Guid.NewGuid();
        Assert.Null(await Store.GetCacheEntryAsync("h1", Ct));
        await Store.PutCacheEntryAsync(Entry("h1", layer), Ct);
        await Store.PutCacheEntryAsync(Entry("h2", Guid.NewGuid(), "/snap/2"), Ct);
        Assert.Equal(Entry("h1", layer), await Store.GetCacheEntryAsync("h1", Ct));
        Assert.Equal(2, await Store.CountCacheEntriesAsync(Ct));

        CacheEntry replaced = Entry("h1", Guid.NewGuid(), "/snap/1") with { Phase = "finalize", ConfigJson = "{\"cpu\":2}" };
        await Store.PutCacheEntryAsync(replaced, Ct);
        Assert.Equal(replaced, await Store.GetCacheEntryAsync("h1", Ct));
        Assert.Equal(2, await Store.CountCacheEntriesAsync(Ct));
        Assert.Equal(["h1", "h2"], (await Store.ListCacheEntriesAsync(Ct)).Select(e => e.Hash).Order());
    }

    [Fact]
    public async Task Deleting_cache_entries_removes_those_hashes_only_and_ignores_unknown_ones()
    {
        foreach (string hash in new[] { "a", "b", "c" })
        {
            await Store.PutCacheEntryAsync(Entry(hash, Guid.NewGuid()), Ct);
        }
        await Store.DeleteCacheEntriesAsync(["a", "c", "not-there"], Ct);
        Assert.Equal(["b"], (await Store.ListCacheEntriesAsync(Ct)).Select(e => e.Hash));
        await Store.DeleteCacheEntriesAsync([], Ct);
        Assert.Equal(1, await Store.CountCacheEntriesAsync(Ct));
    }

    [Fact]
    public async Task Templates_come_back_by_name_list_in_name_order_and_a_delete_says_whether_one_was_there()
    {
        Assert.Null(await Store.GetTemplateAsync("web", Ct));
        TemplateRecord web = TemplateNamed("web", Guid.NewGuid());
        await Store.PutTemplateAsync(web, Ct);
        await Store.PutTemplateAsync(TemplateNamed("api", Guid.NewGuid()) with { SnapshotDirectory = null }, Ct);
        Assert.Equal(web, await Store.GetTemplateAsync("web", Ct));
        Assert.Equal(["api", "web"], (await Store.ListTemplatesAsync(Ct)).Select(t => t.Name));
        Assert.Null((await Store.GetTemplateAsync("api", Ct))!.SnapshotDirectory);

        TemplateRecord rebuilt = web with { FinalHash = "final-2", LayerBuildId = Guid.NewGuid() };
        await Store.PutTemplateAsync(rebuilt, Ct);
        Assert.Equal(rebuilt, await Store.GetTemplateAsync("web", Ct));
        Assert.True(await Store.DeleteTemplateAsync("web", Ct));
        Assert.False(await Store.DeleteTemplateAsync("web", Ct));
        Assert.Equal(["api"], (await Store.ListTemplatesAsync(Ct)).Select(t => t.Name));
    }

    [Fact]
    public async Task A_build_is_running_until_finished_and_keeps_its_status_error_and_hash_per_template()
    {
        long first = await Store.StartBuildAsync("web", T0, Ct);
        long second = await Store.StartBuildAsync("web", T0.AddSeconds(1), Ct);
        long other = await Store.StartBuildAsync("api", T0.AddSeconds(2), Ct);
        Assert.True(second > first);
        BuildRecord running = (await Store.ListBuildsAsync("web", Ct))[0];
        Assert.Equal(new BuildRecord(first, "web", "running", T0, null, null, null), running);

        await Store.FinishBuildAsync(first, "failed", "step 1 exited with 2", null, T0.AddMinutes(1));
        await Store.FinishBuildAsync(second, "succeeded", null, "final-hash", T0.AddMinutes(2));
        await Store.FinishBuildAsync(other, "cancelled", "cancelled", null, T0.AddMinutes(3));
        Assert.Equal(
            [
                new BuildRecord(first, "web", "failed", T0, T0.AddMinutes(1), "step 1 exited with 2", null),
                new BuildRecord(second, "web", "succeeded", T0.AddSeconds(1), T0.AddMinutes(2), null, "final-hash"),
            ],
            await Store.ListBuildsAsync("web", Ct));
        Assert.Equal("cancelled", Assert.Single(await Store.ListBuildsAsync("api", Ct)).Status);
        Assert.Empty(await Store.ListBuildsAsync("none", Ct));
    }

    [Fact]
    public async Task A_build_of_this_live_process_is_not_failed_as_a_dead_owners()
    {
        long id = await Store.StartBuildAsync("web", T0, Ct);
        Assert.Equal(0, await Store.FailBuildsOfDeadOwnersAsync(T0.AddMinutes(1), Ct));
        Assert.Equal("running", Assert.Single(await Store.ListBuildsAsync("web", Ct)).Status);
        await Store.FinishBuildAsync(id, "succeeded", null, "h", T0.AddMinutes(2));
    }

    [Fact]
    public async Task Referenced_layers_are_every_layer_a_cache_entry_or_a_template_names()
    {
        Guid cached = Guid.NewGuid();
        Guid both = Guid.NewGuid();
        Guid templateOnly = Guid.NewGuid();
        Assert.Empty(await Store.ReferencedLayersAsync(Ct));
        await Store.PutCacheEntryAsync(Entry("a", cached), Ct);
        await Store.PutCacheEntryAsync(Entry("b", both), Ct);
        await Store.PutTemplateAsync(TemplateNamed("web", both), Ct);
        await Store.PutTemplateAsync(TemplateNamed("api", templateOnly), Ct);
        Assert.Equal(new HashSet<Guid> { cached, both, templateOnly }, (await Store.ReferencedLayersAsync(Ct)).ToHashSet());

        await Store.DeleteCacheEntriesAsync(["a"], Ct);
        await Store.DeleteTemplateAsync("api", Ct);
        Assert.Equal(new HashSet<Guid> { both }, (await Store.ReferencedLayersAsync(Ct)).ToHashSet());
    }

    [Fact]
    public async Task Sandboxes_come_back_in_start_order_a_put_replaces_and_a_delete_removes()
    {
        var paused = new SandboxRecord("sb-2", "web", "paused", T0.AddSeconds(5), T0.AddMinutes(5), 300, true, "{\"k\":\"v\"}", "{\"A\":\"1\"}",
            "[\"" + Guid.NewGuid() + "\"]", "/snap/sb-2", null);
        var running = new SandboxRecord("sb-1", "api", "running", T0, T0.AddMinutes(10), 600, false, "{}", "{}", "[]", null, "/work/sb-1");
        await Store.PutSandboxAsync(paused, Ct);
        await Store.PutSandboxAsync(running, Ct);
        Assert.Equal([running, paused], await Store.ListSandboxesAsync(Ct));

        SandboxRecord resumed = paused with { State = "running", SnapshotDirectory = null, WorkDirectory = "/work/sb-2" };
        await Store.PutSandboxAsync(resumed, Ct);
        await Store.DeleteSandboxAsync("sb-1");
        await Store.DeleteSandboxAsync("not-there");
        Assert.Equal([resumed], await Store.ListSandboxesAsync(Ct));
    }

    [Fact]
    public async Task Api_keys_are_found_by_hash_listed_in_creation_order_and_deleted_by_id()
    {
        var second = new ApiKeyRecord("k2", "ci", "hash-2", "wxyz", T0.AddDays(1));
        var first = new ApiKeyRecord("k1", "laptop", "hash-1", "abcd", T0);
        await Store.PutApiKeyAsync(second, Ct);
        await Store.PutApiKeyAsync(first, Ct);
        Assert.Equal([first, second], await Store.ListApiKeysAsync(Ct));
        Assert.True(await Store.ApiKeyHashExistsAsync("hash-2", Ct));
        Assert.False(await Store.ApiKeyHashExistsAsync("hash-3", Ct));

        Assert.True(await Store.DeleteApiKeyAsync("k2", Ct));
        Assert.False(await Store.DeleteApiKeyAsync("k2", Ct));
        Assert.False(await Store.ApiKeyHashExistsAsync("hash-2", Ct));
        Assert.Equal([first], await Store.ListApiKeysAsync(Ct));
    }
}

/// <summary><see cref="StateStoreTests"/> on SQLite, and what only the SQLite store does: a file that outlives the store object, schema versions.</summary>
public sealed class SqliteStateStoreTests : StateStoreTests
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-state-test-");

    private string DbPath => _dir.Combine("state.db");

    protected override Task<StateStore> OpenStoreAsync(CancellationToken cancellationToken) => StateStore.OpenAsync(DbPath, cancellationToken);

    public override Task DisposeAsync()
    {
        _dir.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task What_one_store_wrote_another_store_on_the_same_file_reads()
    {
        Guid layer = Guid.NewGuid();
        await Store.PutCacheEntryAsync(Entry("h", layer), Ct);
        await Store.PutTemplateAsync(TemplateNamed("web", layer), Ct);
        StateStore reopened = await StateStore.OpenAsync(DbPath, Ct);
        Assert.Equal(Entry("h", layer), await reopened.GetCacheEntryAsync("h", Ct));
        Assert.Equal(TemplateNamed("web", layer), await reopened.GetTemplateAsync("web", Ct));
        Assert.Equal(DbPath, reopened.Location);
    }

    [Fact]
    public async Task A_database_from_a_newer_schema_is_refused_naming_both_versions()
    {
        await using (var c = new SqliteConnection($"Data Source={DbPath};Pooling=False"))
        {
            await c.OpenAsync();
            await using SqliteCommand cmd = c.CreateCommand();
            cmd.CommandText = $"PRAGMA user_version = {SqliteStateStore.SchemaVersion + 1};";
            await cmd.ExecuteNonQueryAsync();
        }
        var e = await Assert.ThrowsAsync<VesselException>(() => StateStore.OpenAsync(DbPath, Ct));
        Assert.Equal(VesselErrorReason.Unsupported, e.Reason);
        Assert.Contains($"schema version {SqliteStateStore.SchemaVersion + 1}", e.Message, StringComparison.Ordinal);
        Assert.Contains($"knows version {SqliteStateStore.SchemaVersion}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_running_build_whose_process_is_gone_is_failed_saying_so_and_counted_once()
    {
        long id = await Store.StartBuildAsync("web", T0, Ct);
        await using (var c = new SqliteConnection($"Data Source={DbPath};Pooling=False"))
        {
            await c.OpenAsync();
            await using SqliteCommand cmd = c.CreateCommand();
            cmd.CommandText = "UPDATE builds SET owner = '999999999-1' WHERE id = $id"; // no such pid
            cmd.Parameters.AddWithValue("$id", id);
            await cmd.ExecuteNonQueryAsync();
        }
        Assert.Equal(1, await Store.FailBuildsOfDeadOwnersAsync(T0.AddMinutes(1), Ct));
        BuildRecord failed = Assert.Single(await Store.ListBuildsAsync("web", Ct));
        Assert.Equal("failed", failed.Status);
        Assert.Equal(T0.AddMinutes(1), failed.FinishedAt);
        Assert.Contains("ended without finishing it", failed.Error!, StringComparison.Ordinal);
        Assert.Equal(0, await Store.FailBuildsOfDeadOwnersAsync(T0.AddMinutes(2), Ct));
    }
}
