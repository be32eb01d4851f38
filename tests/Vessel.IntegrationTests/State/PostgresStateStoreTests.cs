namespace Vessel.IntegrationTests.State;

/// <summary>One PostgreSQL server for the class (a fresh database per test).</summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private PostgresServer? _server;

    public PostgresServer Server => _server ?? throw new InvalidOperationException("PostgreSQL did not start");

    public async Task InitializeAsync()
    {
        if (Requirements.FirstMissing([PostgresServer.BinDirectory + "/initdb"]) is null)
        {
            _server = await PostgresServer.StartAsync(CancellationToken.None);
        }
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>The state contract on a real PostgreSQL, its migrations, and the server's own cleanup.</summary>
public sealed class PostgresStateStoreTests(PostgresFixture fixture) : StateStoreContract, IClassFixture<PostgresFixture>
{
    protected override async Task<StateStore> OpenFreshAsync(CancellationToken ct)
        => await StateStore.OpenAsync(await fixture.Server.CreateDatabaseAsync(ct), ct);

    protected override Task<StateStore> ReopenAsync(StateStore store, CancellationToken ct)
        => StateStore.OpenAsync(fixture.Server.Url(store.Location[(store.Location.LastIndexOf('/') + 1)..]), ct);

    [RequiresFact(PostgresInitdb)]
    public async Task Nodes_opening_a_fresh_database_together_migrate_it_once()
    {
        string url = await fixture.Server.CreateDatabaseAsync(CancellationToken.None);
        StateStore[] stores = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Task.Run(() => StateStore.OpenAsync(url, CancellationToken.None))));
        await stores[0].PutApiKeyAsync(new ApiKeyRecord("k", "n", "h", "s", DateTimeOffset.UnixEpoch), CancellationToken.None);
        Assert.True(await stores[5].ApiKeyHashExistsAsync("h", CancellationToken.None));
        await PostgresServer.ExecuteAsync(url, "DO $$ BEGIN IF (SELECT count(*) FROM vessel_schema) <> (SELECT max(version) FROM vessel_schema) THEN RAISE EXCEPTION 'migrated more than once'; END IF; END $$;", CancellationToken.None);
    }

    [RequiresFact(PostgresInitdb)]
    public async Task A_database_of_a_newer_schema_is_refused_naming_both_versions()
    {
        string url = await fixture.Server.CreateDatabaseAsync(CancellationToken.None);
        await StateStore.OpenAsync(url, CancellationToken.None);
        await PostgresServer.ExecuteAsync(url, "INSERT INTO vessel_schema (version, applied_at) VALUES (99, 'later')", CancellationToken.None);
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => StateStore.OpenAsync(url, CancellationToken.None));
        Assert.Equal(VesselErrorReason.Unsupported, e.Reason);
        Assert.Contains("schema version 99", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact(PostgresInitdb)]
    public async Task A_server_that_is_not_there_is_reported_as_unavailable_naming_the_database()
    {
        string url = fixture.Server.Url("vessel").Replace(Uri.EscapeDataString(fixture.Server.SocketDirectory), Uri.EscapeDataString("/nonexistent-vessel-pg"), StringComparison.Ordinal);
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => StateStore.OpenAsync(url, CancellationToken.None));
        Assert.Equal(VesselErrorReason.Unavailable, e.Reason);
        Assert.Contains("postgres://vessel@/nonexistent-vessel-pg", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact(PostgresInitdb)]
    public async Task The_test_server_stops_and_leaves_no_process_or_directory()
    {
        PostgresServer server = await PostgresServer.StartAsync(CancellationToken.None);
        string url = await server.CreateDatabaseAsync(CancellationToken.None);
        StateStore state = await StateStore.OpenAsync(url, CancellationToken.None);
        await state.PutApiKeyAsync(new ApiKeyRecord("k", "n", "h", "s", DateTimeOffset.UnixEpoch), CancellationToken.None); // a pooled connection stays open
        await server.DisposeAsync(); // the fast shutdown ends that session too
        Assert.False(Directory.Exists($"/proc/{server.ProcessId}"), "the postmaster still runs");
        Assert.False(Directory.Exists(server.RootDirectory));
        Assert.DoesNotContain(Directory.EnumerateDirectories("/proc"), d => ReadCommandLine(d).Contains(server.RootDirectory, StringComparison.Ordinal));
    }

    private static string ReadCommandLine(string proc)
    {
        try
        {
            return File.ReadAllText(Path.Combine(proc, "cmdline"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return string.Empty;
        }
    }
}
