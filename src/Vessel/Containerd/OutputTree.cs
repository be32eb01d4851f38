using Vessel.Interop;

namespace Vessel.Containerd;

/// <summary>
/// The output directory where artifacts appear, each at its image path under the root
/// ("/boot/vmlinuz" becomes OUT/boot/vmlinuz). Creating is two steps so the caller can
/// record everything in its state (one write) before anything exists: <see cref="Plan"/>
/// lists what is missing, <see cref="Create"/> makes it. Symlinks inside the tree are never
/// followed, and nothing that already exists is ever claimed.
/// </summary>
internal sealed class OutputTree
{

    private OutputTree(string root)
    {
        Root = root;
    }

    public string Root { get; }

    /// <summary>Names the output directory (it may not exist yet; its parent must).</summary>
    public static OutputTree Resolve(string directory)
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
        if (type is null && !Directory.Exists(Path.GetDirectoryName(full)))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Output directory {full}: its parent does not exist.");
        }
        if (type is not null && type != LibC.SIfDir)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"Output {full} exists and is not a directory.");
        }
        return new OutputTree(full);
    }

    public string TargetFor(string cleanImagePath) => Root + cleanImagePath;

    /// <summary>
    /// The directories and files to create so that each target exists, in creation order.
    /// Targets in <paramref name="ours"/> may already exist (an earlier try made them); any
    /// other existing target, or a non-directory on the way (a symlink included), is an error.
    /// </summary>
    public IReadOnlyList<string> Plan(IEnumerable<string> targets, IReadOnlyCollection<string> ours)
    {
        var plan = new List<string>();
        var planned = new HashSet<string>(StringComparer.Ordinal);
        foreach (string target in targets)
        {
            string current = Root;
            string[] parts = ImagePath.Split(target[Root.Length..]);
            for (int i = -1; i < parts.Length - 1; i++)
            {
                current = i < 0 ? Root : current + "/" + parts[i];
                if (planned.Contains(current))
                {
                    continue;
                }
                int? type = UnixFile.TypeOf(current);
                if (type is null)
                {
                    plan.Add(current);
                    planned.Add(current);
                }
                else if (type != LibC.SIfDir)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput,
                        $"{current} exists in the output directory and is not a directory (symlinks there are not followed); use an empty --out.");
                }
            }
            if (UnixFile.TypeOf(target) is null)
            {
                plan.Add(target);
                planned.Add(target);
            }
            else if (!ours.Contains(target))
            {
                throw new VesselException(VesselErrorReason.AlreadyExists,
                    $"{target} already exists; use an empty --out, or run 'vessel containerd cleanup' for the bundle that made it.");
            }
        }
        return plan;
    }

    /// <summary>Creates what <see cref="Plan"/> listed: directories, and empty files for the targets.</summary>
    public static void Create(IReadOnlyList<string> plan, IReadOnlySet<string> targets)
    {
        foreach (string path in plan)
        {
            if (targets.Contains(path))
            {
                // CreateNew is O_CREAT|O_EXCL: it fails on anything already there, a symlink included.
                using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            }
            else
            {
                Directory.CreateDirectory(path);
                if (UnixFile.TypeOf(path) != LibC.SIfDir)
                {
                    throw new VesselException(VesselErrorReason.Conflict, $"{path} changed under Vessel while it created the output directory.");
                }
            }
        }
    }
}
