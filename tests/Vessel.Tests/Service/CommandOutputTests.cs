using Microsoft.Data.Sqlite;
using Vessel.Service;

namespace Vessel.Tests.Service;

public sealed class CommandOutputTests
{
    private static async Task<(List<CommandEvent> Events, long Dropped)> ReadAllAsync(CommandOutput output, long from)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var events = new List<CommandEvent>();
        long dropped = 0;
        await foreach (CommandEvent e in output.ReadAsync(from, d => dropped = d, cts.Token))
        {
            events.Add(e);
        }
        return (events, dropped);
    }

    [Fact]
    public async Task A_reader_from_the_start_sees_every_event_up_to_the_exit()
    {
        var output = new CommandOutput();
        output.AddData(CommandEventKind.Stdout, "a"u8);
        output.AddData(CommandEventKind.Stderr, "b"u8);
        output.Complete(3, 0, false);
        output.AddData(CommandEventKind.Stdout, "late"u8); // after the exit: ignored
        (List<CommandEvent> events, long dropped) = await ReadAllAsync(output, 0);
        Assert.Equal([CommandEventKind.Stdout, CommandEventKind.Stderr, CommandEventKind.Exit], events.Select(e => e.Kind));
        Assert.Equal(3, events[^1].ExitCode);
        Assert.Equal(0, dropped);
    }

    [Fact]
    public async Task A_follower_gets_events_written_after_it_started_waiting()
    {
        var output = new CommandOutput();
        Task<(List<CommandEvent> Events, long Dropped)> reading = ReadAllAsync(output, output.Next);
        await Task.Delay(50);
        output.AddData(CommandEventKind.Stdout, "x"u8);
        output.Fail("gone");
        (List<CommandEvent> events, _) = await reading;
        Assert.Equal("x"u8.ToArray(), events[0].Data);
        Assert.Equal("gone", events[1].Message);
    }

    [Fact]
    public async Task Output_past_the_bound_drops_the_oldest_bytes_and_says_how_many()
    {
        var output = new CommandOutput();
        byte[] chunk = new byte[64 * 1024];
        for (int i = 0; i < 20; i++)
        {
            output.AddData(CommandEventKind.Stdout, chunk);
        }
        output.Complete(0, 0, false);
        (List<CommandEvent> events, long dropped) = await ReadAllAsync(output, 0);
        long kept = events.Sum(e => (long)e.Data.Length);
        Assert.True(kept <= CommandOutput.Capacity);
        Assert.Equal(20L * chunk.Length, kept + dropped);
        Assert.Equal(CommandEventKind.Exit, events[^1].Kind);
    }
}

public sealed class ServiceStateTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-svc-state-");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_version_1_database_gains_the_service_tables_and_keeps_its_templates()
    {
        string path = _dir.Combine("state.db");
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await c.OpenAsync();
            using SqliteCommand cmd = c.CreateCommand();
            cmd.CommandText = """
                CREATE TABLE templates (name TEXT PRIMARY KEY, spec_json TEXT NOT NULL, final_hash TEXT NOT NULL, layer_build TEXT NOT NULL,
                    disk_size INTEGER NOT NULL, config_json TEXT NOT NULL, snapshot_dir TEXT, built_at TEXT NOT NULL);
                INSERT INTO templates VALUES ('old', '{}', 'h', '00000000-0000-0000-0000-000000000001', 1, '{}', NULL, '2026-01-01T00:00:00Z');
                CREATE TABLE builds (id INTEGER PRIMARY KEY AUTOINCREMENT, template TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
                    started_at TEXT NOT NULL, finished_at TEXT, error TEXT, final_hash TEXT);
                PRAGMA user_version = 1;
                """;
            await cmd.ExecuteNonQueryAsync();
        }
        StateStore state = await StateStore.OpenAsync(path, CancellationToken.None);
        Assert.NotNull(await state.GetTemplateAsync("old", CancellationToken.None));
        var record = new SandboxRecord("sbx-1", "old", "paused", DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch.AddSeconds(300), 300, true, "{\"a\":\"b\"}", "{}", "[]", "/snap", null);
        await state.PutSandboxAsync(record, CancellationToken.None);
        Assert.Equal(record, (await state.ListSandboxesAsync(CancellationToken.None)).Single());
        (ApiKeyRecord key, string secret) = await ApiKeys.CreateAsync(state, "ci", TimeProvider.System, CancellationToken.None);
        Assert.True(await ApiKeys.IsValidAsync(state, secret, CancellationToken.None));
        Assert.False(await ApiKeys.IsValidAsync(state, secret + "0", CancellationToken.None));
        Assert.DoesNotContain(secret, (await state.ListApiKeysAsync(CancellationToken.None)).Select(k => k.Hash));
        Assert.True(await state.DeleteApiKeyAsync(key.Id, CancellationToken.None));
        Assert.False(await ApiKeys.IsValidAsync(state, secret, CancellationToken.None));
        await state.DeleteSandboxAsync("sbx-1");
        Assert.Empty(await state.ListSandboxesAsync(CancellationToken.None));
    }
}
