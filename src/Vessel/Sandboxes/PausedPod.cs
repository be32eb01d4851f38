using System.Text.Json;
using Vessel.Oci;

namespace Vessel.Sandboxes;

/// <summary>
/// A paused pod's description beside its snapshot (<see cref="FileName"/>): its spec, its
/// containers and the image disks its resume attaches, so that a restarted daemon can adopt the
/// paused pod as it adopts a paused sandbox's disk layer (docs/formats/sandbox-snapshot.md).
/// </summary>
internal static class PausedPod
{
    public const string FileName = "pod.json";

    private static readonly JsonSerializerOptions Options = new() { WriteIndented = true };

    public static async Task WriteAsync(string directory, PodInfo pod, CancellationToken cancellationToken)
    {
        var saved = new Saved(pod.Spec, pod.Containers, pod.Lowers.Select(l => new SavedLower(l.Id, l.Path, l.ContentDigest)).ToList());
        await File.WriteAllTextAsync(Path.Combine(directory, FileName), JsonSerializer.Serialize(saved, Options), cancellationToken);
    }

    /// <summary>
    /// The pod paused into <paramref name="directory"/>, null when it holds no pod. A file that does
    /// not parse, a spec that is not valid or a disk outside <paramref name="imagesDirectory"/> is
    /// refused naming the file: a resume must attach nothing but the home's own image disks.
    /// </summary>
    public static async Task<PodInfo?> ReadAsync(string directory, string imagesDirectory, CancellationToken cancellationToken)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }
        Saved saved;
        try
        {
            saved = JsonSerializer.Deserialize<Saved>(await File.ReadAllTextAsync(path, cancellationToken), Options)
                ?? throw new JsonException("the file holds null");
        }
        catch (JsonException e)
        {
            throw Invalid(path, e.Message);
        }
        if (saved.Spec is null || saved.Containers is null || saved.Lowers is null || saved.Lowers.Count == 0)
        {
            throw Invalid(path, "spec, containers and lowers are required");
        }
        try
        {
            saved.Spec.Validate();
        }
        catch (VesselException e)
        {
            throw Invalid(path, e.Message);
        }
        string images = Path.GetFullPath(imagesDirectory);
        var lowers = new List<PodLower>();
        foreach (SavedLower l in saved.Lowers)
        {
            if (l?.Path is null || l.Id is null || l.ContentDigest is null
                || !string.Equals(Path.GetDirectoryName(Path.GetFullPath(l.Path)), images, StringComparison.Ordinal))
            {
                throw Invalid(path, $"image disk {l?.Path ?? "(none)"} is not a file of the image cache {images}");
            }
            lowers.Add(new PodLower(l.Id, l.Path, l.ContentDigest, ImageConfig.Empty, Built: false));
        }
        return new PodInfo(saved.Spec, saved.Containers) { Lowers = lowers };
    }

    private static VesselException Invalid(string path, string problem)
        => new(VesselErrorReason.InvalidInput, $"The paused pod's description {path} is damaged ({problem}): the pod cannot resume.");

    private sealed record SavedLower(string Id, string Path, string ContentDigest);

    private sealed record Saved(PodSpec Spec, IReadOnlyList<PodContainer> Containers, IReadOnlyList<SavedLower> Lowers);
}
