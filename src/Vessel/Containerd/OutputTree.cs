namespace Vessel.Containerd;

/// <summary>
/// The output directory where artifacts appear, each at its image path under the root
/// ("/boot/vmlinuz" becomes OUT/boot/vmlinuz). Everything created here is recorded (through
/// <c>record</c>, which persists it) before it is created, so cleanup can remove exactly it.
/// Existing symlinks inside the tree are never followed.
/// </summary>
internal sealed class OutputTree
{
    private const int TypeDirectory = 0x4000;

    private readonly Action<string> _record;

    private OutputTree(string root, Action<string> record)
    {
        Root = root;
        _record = record;
    }

    public string Root { get; }

    /// <summary>Opens (creating it, recorded, if missing) the output directory; its parent must exist.</summary>
    public static OutputTree Open(string directory, Action<string> record)
    {
        string full = Path.GetFullPath(directory).TrimEnd('/');
        if (full.Length == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "The output directory cannot be '/'.");
        }
        // The operator may name the output through a symlink (/var/run -> /run): resolve that once.
        var info = new DirectoryInfo(full);
        if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target)
        {
            full = target.FullName.TrimEnd('/');
        }
        int? type = UnixFile.TypeOf(full);
        if (type is null)
        {
            string? parent = Path.GetDirectoryName(full);
            if (parent is null || !Directory.Exists(parent))
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"Output directory {full}: its parent does not exist.");
            }
            record(full);
            Directory.CreateDirectory(full);
        }
        else if (type != TypeDirectory)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Output {full} exists and is not a directory.");
        }
        return new OutputTree(full, record);
    }

    public string TargetFor(string cleanImagePath) => Root + cleanImagePath;

    /// <summary>Creates the directories above <paramref name="target"/> that are missing, refusing symlinks and files on the way.</summary>
    public void EnsureParents(string target)
    {
        string relative = target[Root.Length..];
        string[] parts = ImagePath.Split(relative);
        string current = Root;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            current += "/" + parts[i];
            int? type = UnixFile.TypeOf(current);
            if (type is null)
            {
                _record(current);
                Directory.CreateDirectory(current);
            }
            else if (type != TypeDirectory)
            {
                throw new VesselException(VesselErrorReason.InvalidInput,
                    $"{current} exists in the output directory and is not a directory (symlinks there are not followed); use an empty --out.");
            }
        }
    }

    /// <summary>Creates an empty file at <paramref name="target"/>; it must not exist.</summary>
    public void CreateEmptyFile(string target)
    {
        if (UnixFile.TypeOf(target) is not null)
        {
            throw new VesselException(VesselErrorReason.AlreadyExists,
                $"{target} already exists; use an empty --out, or run 'vessel containerd cleanup' for the bundle that made it.");
        }
        _record(target);
        // CreateNew is O_CREAT|O_EXCL: it fails on anything already there, a symlink included.
        using var stream = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None);
    }
}
