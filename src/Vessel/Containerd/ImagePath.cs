using Vessel.Interop;

namespace Vessel.Containerd;

/// <summary>
/// Paths inside an image's root filesystem. They are cleaned lexically as if the image root
/// were "/" (so ".." stops at the root), and symlinks are resolved inside the image, never
/// on the host.
/// </summary>
internal static class ImagePath
{
    /// <summary>Linux's limit on symlinks followed in one lookup (ELOOP).</summary>
    public const int MaxSymlinks = 40;

    /// <summary>"boot//./vmlinuz", "/x/../boot/vmlinuz" become "/boot/vmlinuz"; "" and "/" are rejected.</summary>
    public static string Clean(string path)
    {
        var parts = new List<string>();
        foreach (string part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!ApplyDots(parts, part))
            {
                parts.Add(part);
            }
        }
        return "/" + string.Join('/', parts);
    }

    /// <summary>Applies a "." or ".." component to <paramref name="parts"/> (".." stops at the root) and says so; false for a name.</summary>
    private static bool ApplyDots(List<string> parts, string part)
    {
        if (part == "..")
        {
            if (parts.Count > 0)
            {
                parts.RemoveAt(parts.Count - 1);
            }
            return true;
        }
        return part == ".";
    }

    /// <summary>Cleans a requested artifact path, rejecting the root and NUL bytes.</summary>
    public static string CleanRequested(string path)
    {
        if (string.IsNullOrWhiteSpace(path) || path.Contains('\0', StringComparison.Ordinal))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"'{path}' is not a file path inside the image.");
        }
        string clean = Clean(path);
        if (clean == "/")
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"'{path}' names the image root, not a file.");
        }
        return clean;
    }

    /// <summary>The components of a cleaned path ("/a/b" gives ["a", "b"]).</summary>
    public static string[] Split(string cleanPath) => cleanPath.Split('/', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Joins a symlink target to the directory holding the link, inside the image.</summary>
    public static string ResolveLinkTarget(string linkDirectory, string target)
        => Clean(target.StartsWith('/') ? target : linkDirectory.TrimEnd('/') + "/" + target);

    /// <summary>
    /// Resolves <paramref name="imagePath"/> in a directory tree on the host that holds an image
    /// root (a mounted view), following symlinks as the image sees them, and returns the host
    /// path of the final regular file. The tree must not change meanwhile (a read-only view).
    /// </summary>
    public static string ResolveInTree(string root, string imagePath, string imageName)
    {
        string requested = CleanRequested(imagePath);
        var pending = new Stack<string>(Split(requested).Reverse());
        var resolved = new List<string>();
        int links = 0;
        while (pending.Count > 0)
        {
            string part = pending.Pop();
            if (ApplyDots(resolved, part))
            {
                continue;
            }
            string host = HostPath(root, resolved, part);
            var info = new FileInfo(host);
            if (!info.Exists && !Directory.Exists(host) && info.LinkTarget is null)
            {
                throw Missing(requested, imageName, "/" + string.Join('/', resolved.Append(part)));
            }
            if (info.LinkTarget is { } target)
            {
                if (++links > MaxSymlinks)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"'{requested}' in image '{imageName}': too many levels of symbolic links.");
                }
                if (target.StartsWith('/'))
                {
                    resolved.Clear();
                }
                foreach (string p in Split(target).Reverse())
                {
                    pending.Push(p);
                }
                continue;
            }
            bool last = pending.Count == 0;
            bool isDirectory = (info.Attributes & FileAttributes.Directory) != 0;
            if (!last && !isDirectory)
            {
                throw Missing(requested, imageName, "/" + string.Join('/', resolved.Append(part)) + " (not a directory)");
            }
            if (last && isDirectory)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"'{requested}' in image '{imageName}' is a directory, not a file.");
            }
            resolved.Add(part);
        }
        if (resolved.Count == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"'{requested}' in image '{imageName}' resolves to the image root, not a file.");
        }
        string final = HostPath(root, resolved.Take(resolved.Count - 1).ToList(), resolved[^1]);
        if (!UnixFile.IsRegularFile(final))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"'{requested}' in image '{imageName}' is not a regular file.");
        }
        return final;
    }

    /// <summary>The clear error for an artifact the image lacks, naming both.</summary>
    public static VesselException Missing(string requested, string imageName, string? missingPart = null)
    {
        string detail = missingPart is not null && missingPart != requested ? $" ({missingPart} does not exist)" : string.Empty;
        return new VesselException(VesselErrorReason.NotFound, $"Image '{imageName}' has no file '{requested}'{detail}.");
    }

    private static string HostPath(string root, IReadOnlyList<string> resolved, string part)
        => Path.Combine([root, .. resolved, part]);
}
