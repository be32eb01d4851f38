using Vessel.Containerd.Api.Images;
using Vessel.Oci;

namespace Vessel.Containerd;

/// <summary>
/// An image in containerd's content store as one more <see cref="IImageSource"/>: the image
/// record names the root descriptor, and blobs stream from Content/Read. The walk from index to
/// manifest to config, media types, digest and diff_id checks and decompression are
/// <see cref="OciImageSource"/>'s, as for a layout, an archive or a registry.
/// </summary>
internal sealed class ContainerdImageSource : OciImageSource
{
    private readonly ContainerdClient _client;
    private readonly OciDescriptor _root;

    public ContainerdImageSource(ContainerdClient client, string name, OciDescriptor root)
        : base($"'{name}' in containerd", ImageSourceOptions.Default)
    {
        _client = client;
        _root = root;
    }

    /// <summary>
    /// Looks <paramref name="reference"/> up (as given, then in its normalized docker form) and
    /// returns the stored name with the image's target descriptor.
    /// </summary>
    public static async Task<(string Name, OciDescriptor Target)> FindAsync(ContainerdClient client, string reference, CancellationToken cancellationToken)
    {
        Image image = await GetImageAsync(client, reference, cancellationToken);
        Api.Types.OciDescriptor target = image.Target
            ?? throw new VesselException(VesselErrorReason.Corrupt, $"Image '{image.Name}' has no target descriptor.");
        string what = $"the target of image '{image.Name}' in containerd";
        var descriptor = new OciDescriptor(
            target.MediaType, OciDigest.Parse(target.Digest, what), target.Size, Platform: null,
            new Dictionary<string, string>(target.Annotations, StringComparer.Ordinal), Urls: []);
        return (image.Name, descriptor);
    }

    protected override Task<(OciDescriptor Root, byte[]? Json, string? ContentType)> SelectRootAsync(CancellationToken cancellationToken)
        => Task.FromResult<(OciDescriptor, byte[]?, string?)>((_root, null, null));

    protected override Task<Stream> OpenBlobAsync(OciDescriptor descriptor, string what, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult<Stream>(new ContentStream(_client, descriptor.Digest));
    }

    private static async Task<Image> GetImageAsync(ContainerdClient client, string reference, CancellationToken cancellationToken)
    {
        try
        {
            return await client.GetImageAsync(reference, cancellationToken);
        }
        catch (VesselException e) when (e.Reason == VesselErrorReason.NotFound)
        {
            string normalized = ContainerdImage.NormalizeReference(reference);
            if (normalized != reference)
            {
                try
                {
                    return await client.GetImageAsync(normalized, cancellationToken);
                }
                catch (VesselException e2) when (e2.Reason == VesselErrorReason.NotFound)
                {
                }
            }
            string tried = normalized != reference ? $"'{reference}' and '{normalized}'" : $"'{reference}'";
            throw new VesselException(VesselErrorReason.NotFound,
                $"Image {tried} not found in namespace '{client.Namespace}' of containerd at {client.Address}: pull or import it first (ctr -n {client.Namespace} images ls lists what is there).", e);
        }
    }
}
