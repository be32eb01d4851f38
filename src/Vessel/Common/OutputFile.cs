using Vessel.Interop;

namespace Vessel.Common;

/// <summary>
/// The one way Vessel writes a path a user named (<c>rootfs build -o</c>, its <c>.json</c>,
/// <c>blocks flatten</c>, kit and containerd outputs). The final path may only be created or
/// replace a regular file: a device, FIFO, socket, directory or symlink there is refused with
/// a message before anything is written, so <c>-o /dev/null</c> never replaces /dev/null and a
/// planted symlink never picks the file Vessel overwrites. The bytes go to a partial file
/// beside it, <c>.NAME.PID-START.RANDOM.partial</c>, which the caller creates with
/// <see cref="FileMode.CreateNew"/> (O_CREAT|O_EXCL: it never follows a symlink), and
/// <see cref="Commit"/> renames into place (rename(2) replaces the name, it does not write
/// through it). A partial file carries its owner (<see cref="ProcessOwner"/>), so a later run
/// removes those a killed process left (<see cref="ReclaimLeftovers"/>). Disposing an
/// uncommitted output deletes its partial file.
/// </summary>
public sealed class OutputFile : IDisposable
{
    private const string PartialSuffix = ".partial";
    private bool _committed;

    private OutputFile(string path, string partialPath)
    {
        Path = path;
        PartialPath = partialPath;
    }

    /// <summary>The full final path.</summary>
    public string Path { get; }

    /// <summary>Where to write: a fresh name in the same directory, not yet created.</summary>
    public string PartialPath { get; }

    /// <summary>Checks <paramref name="path"/> and reserves a partial name beside it; <paramref name="what"/> names it in errors.</summary>
    public static OutputFile Begin(string path, string what = "output")
    {
        string full = Check(path, what);
        string directory = System.IO.Path.GetDirectoryName(full)!;
        ReclaimLeftovers(directory);
        string partial = System.IO.Path.Combine(directory,
            $".{System.IO.Path.GetFileName(full)}.{ProcessOwner.Current}.{Guid.NewGuid():N}{PartialSuffix}");
        return new OutputFile(full, partial);
    }

    /// <summary>
    /// The full path of <paramref name="path"/> once it is known to be a place Vessel may write:
    /// its directory exists and the path is absent or a regular file.
    /// </summary>
    public static string Check(string path, string what = "output")
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"the {what} path is empty");
        }
        string full = System.IO.Path.GetFullPath(path);
        if (full.EndsWith('/'))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{what} '{path}' names a directory; give a file name");
        }
        string directory = System.IO.Path.GetDirectoryName(full)!;
        int? dirType = UnixFile.TypeOfFollowingLinks(directory);
        if (dirType is null)
        {
            throw new VesselException(VesselErrorReason.NotFound, $"{what} directory '{directory}' does not exist");
        }
        if (dirType != LibC.SIfDir)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{what} directory '{directory}' is not a directory");
        }
        int? type = UnixFile.TypeOf(full);
        if (type is not null and not LibC.SIfReg)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"{what} '{full}' is {UnixFile.Describe(type.Value)}; Vessel only creates or replaces regular files (give another path)");
        }
        return full;
    }

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/> the same way: checked, partial, fsynced, renamed.</summary>
    public static async Task WriteAllBytesAsync(string path, ReadOnlyMemory<byte> content, string what, CancellationToken cancellationToken)
    {
        using OutputFile output = Begin(path, what);
        await using (var stream = new FileStream(output.PartialPath, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            await stream.WriteAsync(content, cancellationToken);
            stream.Flush(flushToDisk: true);
        }
        output.Commit();
    }

    /// <summary>
    /// Renames the partial file over the final path, checking again just before that the path
    /// is still absent or a regular file. When it is absent the move refuses to replace anything
    /// that appears meanwhile.
    /// </summary>
    public void Commit()
    {
        int? type = UnixFile.TypeOf(Path);
        if (type is not null and not LibC.SIfReg)
        {
            throw new VesselException(VesselErrorReason.Conflict,
                $"'{Path}' became {UnixFile.Describe(type.Value)} while Vessel wrote it; nothing was replaced");
        }
        File.Move(PartialPath, Path, overwrite: type is not null);
        _committed = true;
    }

    public void Dispose()
    {
        if (!_committed)
        {
            File.Delete(PartialPath);
        }
    }

    /// <summary>
    /// Deletes partial files in <paramref name="directory"/> whose owner process is gone (a
    /// build killed with SIGKILL). Returns what it removed; partial files of live processes and
    /// files of any other form are left alone.
    /// </summary>
    public static IReadOnlyList<string> ReclaimLeftovers(string directory) => WorkLeftovers.DeleteFiles(FindLeftovers(directory));

    /// <summary>The partial files in <paramref name="directory"/> whose owner process is gone: what <see cref="ReclaimLeftovers"/> removes.</summary>
    public static IReadOnlyList<string> FindLeftovers(string directory)
    {
        try
        {
            return Directory.EnumerateFiles(directory)
                .Where(f => OwnerOf(System.IO.Path.GetFileName(f)) is string owner && !ProcessOwner.IsAlive(owner) && UnixFile.TypeOf(f) == LibC.SIfReg)
                .ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>The owner stamp in <c>.NAME.PID-START.RANDOM.partial</c>, or null for any other name.</summary>
    internal static string? OwnerOf(string fileName)
    {
        if (!fileName.EndsWith(PartialSuffix, StringComparison.Ordinal))
        {
            return null;
        }
        string[] parts = fileName[..^PartialSuffix.Length].Split('.');
        if (parts.Length < 4 || parts[^1].Length != 32 || !parts[^1].All(char.IsAsciiHexDigitLower) || !ProcessOwner.IsStamp(parts[^2]))
        {
            return null;
        }
        return parts[^2];
    }
}
