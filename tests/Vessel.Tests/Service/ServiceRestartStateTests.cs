using Vessel.Service;

namespace Vessel.Tests.Service;

public sealed class ServiceRestartStateTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-svc-restart-");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Saved_commands_come_back_with_their_pid_output_and_reading_positions()
    {
        var running = new ServiceCommand(41, "/bin/sh", ["-c", "loop"], background: true, DateTimeOffset.UnixEpoch.AddDays(1), stdinOpen: true);
        running.Output.AddData(CommandEventKind.Stdout, "tick 1\n"u8);
        running.Output.AddData(CommandEventKind.Stderr, [0xff, 0x00, 0x7f]);
        var done = new ServiceCommand(42, "true", [], background: true, DateTimeOffset.UnixEpoch, stdinOpen: false);
        done.Output.Complete(0, 9, timedOut: false);

        await ServiceCommand.WriteAllAsync(_dir.Path, [running, done], CancellationToken.None);
        Dictionary<int, ServiceCommand> back = (await ServiceCommand.ReadAllAsync(_dir.Path, CancellationToken.None)).ToDictionary(c => c.Pid);

        ServiceCommand r = back[41];
        Assert.Equal(["-c", "loop"], r.Args);
        Assert.True(r.Background);
        Assert.False(r.StdinClosed);
        Assert.False(r.Output.Completed);
        Assert.Equal(running.Output.Next, r.Output.Next);
        (IReadOnlyList<CommandEvent> events, _, _) = r.Output.Export();
        Assert.Equal("tick 1\n"u8.ToArray(), events[0].Data);
        Assert.Equal(new byte[] { 0xff, 0x00, 0x7f }, events[1].Data);
        Assert.Equal(CommandEventKind.Stderr, events[1].Kind);
        // New output continues the numbering: a reader at "now" before the restart misses nothing.
        r.Output.AddData(CommandEventKind.Stdout, "tick 2\n"u8);
        Assert.Equal(2, r.Output.Export().Events[^1].Sequence);
        Assert.True(back[42].Output.Completed);
        Assert.True(back[42].StdinClosed);
        Assert.Equal(9, back[42].Output.Export().Events[^1].Signal);
    }

    [Fact]
    public async Task No_saved_commands_file_means_no_commands_and_a_damaged_one_is_refused_by_name()
    {
        Assert.Empty(await ServiceCommand.ReadAllAsync(_dir.Path, CancellationToken.None));
        await File.WriteAllTextAsync(Path.Combine(_dir.Path, ServiceCommand.SavedFile), "[{\"pid\": ");
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => ServiceCommand.ReadAllAsync(_dir.Path, CancellationToken.None));
        Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
        Assert.Contains(ServiceCommand.SavedFile, e.Message, StringComparison.Ordinal);
    }
}
