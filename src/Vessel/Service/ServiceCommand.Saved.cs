using System.Text.Json;

namespace Vessel.Service;

/// <summary>One kept output event of a saved command (base64 data on disk).</summary>
internal sealed record SavedCommandEvent(long Sequence, CommandEventKind Kind, byte[] Data, int ExitCode, int Signal, bool TimedOut, string? Message);

/// <summary>A command as a pause saves it beside the snapshot: enough to list it, re-attach to it and replay its output after a daemon restart.</summary>
internal sealed record SavedCommand(
    int Pid, string Cmd, IReadOnlyList<string> Args, bool Background, DateTimeOffset StartedAt, bool StdinClosed, DateTimeOffset? EndedAt,
    long DroppedBytes, long Next, IReadOnlyList<SavedCommandEvent> Events);

internal sealed partial class ServiceCommand
{
    /// <summary>The file a pause writes into the snapshot directory (docs/formats/sandbox-snapshot.md).</summary>
    public const string SavedFile = "commands.json";

    private static readonly JsonSerializerOptions SavedJson = new(JsonSerializerDefaults.Web);

    public SavedCommand Save()
    {
        (IReadOnlyList<CommandEvent> events, long dropped, long next) = Output.Export();
        return new SavedCommand(Pid, Cmd, Args, Background, StartedAt, StdinClosed, EndedAt, dropped, next,
            events.Select(e => new SavedCommandEvent(e.Sequence, e.Kind, e.Data, e.ExitCode, e.Signal, e.TimedOut, e.Message)).ToList());
    }

    /// <summary>A command of a paused sandbox, as <see cref="Save"/> left it; it re-attaches on resume.</summary>
    public static ServiceCommand Restore(SavedCommand saved) => new(saved.Pid, saved.Cmd, saved.Args, saved.Background, saved.StartedAt, stdinOpen: !saved.StdinClosed)
    {
        EndedAt = saved.EndedAt,
        Output = CommandOutput.Import(
            saved.Events.Select(e => new CommandEvent(e.Sequence, e.Kind, e.Data, e.ExitCode, e.Signal, e.TimedOut, e.Message)).ToList(), saved.DroppedBytes, saved.Next),
    };

    /// <summary>Writes the commands of a sandbox being paused into its snapshot directory.</summary>
    public static async Task WriteAllAsync(string directory, IEnumerable<ServiceCommand> commands, CancellationToken cancellationToken)
    {
        string path = Path.Combine(directory, SavedFile);
        await using (FileStream file = File.Create(path + ".tmp"))
        {
            await JsonSerializer.SerializeAsync(file, commands.Select(c => c.Save()).ToList(), SavedJson, cancellationToken);
            file.Flush(flushToDisk: true);
        }
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>The commands a pause saved in <paramref name="directory"/> (none when it saved none).</summary>
    public static async Task<IReadOnlyList<ServiceCommand>> ReadAllAsync(string directory, CancellationToken cancellationToken)
    {
        string path = Path.Combine(directory, SavedFile);
        if (!File.Exists(path))
        {
            return [];
        }
        try
        {
            await using FileStream file = File.OpenRead(path);
            List<SavedCommand>? saved = await JsonSerializer.DeserializeAsync<List<SavedCommand>>(file, SavedJson, cancellationToken);
            return (saved ?? []).Select(Restore).ToList();
        }
        catch (JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{path}: the saved commands cannot be read: {e.Message}", e);
        }
    }
}
