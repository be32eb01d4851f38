namespace Vessel.Blocks;

/// <summary>
/// A home's layer store with a bucket behind it (<c>VESSEL_REMOTE_STORE</c>): builds are read
/// from the local directory when they are there and from the bucket otherwise (chunk by chunk, on
/// demand, through its cache), so a sandbox of a template pulled with <c>--lazy</c> starts before
/// the template's layers have arrived. New builds (pauses, template steps) and stamps go to the
/// local directory; deletes touch only local builds.
/// </summary>
internal sealed class TieredLayerStorage(ILayerStorage local, ILayerStorage remote) : ILayerStorage, IDisposable
{
    public string Location => $"{local.Location} (then {remote.Location})";

    /// <summary>The bucket behind the local store.</summary>
    public ILayerStorage Remote => remote;

    /// <summary>The home's own directory.</summary>
    public ILayerStorage Local => local;

    public async Task<IReadOnlyList<Guid>> ListAsync(CancellationToken cancellationToken)
    {
        var ids = new SortedSet<Guid>(await local.ListAsync(cancellationToken));
        ids.UnionWith(await remote.ListAsync(cancellationToken));
        return [.. ids];
    }

    public async Task<byte[]?> TryReadHeaderAsync(Guid buildId, CancellationToken cancellationToken)
        => await local.TryReadHeaderAsync(buildId, cancellationToken) ?? await remote.TryReadHeaderAsync(buildId, cancellationToken);

    public async Task<ILayerData> OpenDataAsync(Guid buildId, CancellationToken cancellationToken)
        => await local.TryReadHeaderAsync(buildId, cancellationToken) is not null
            ? await local.OpenDataAsync(buildId, cancellationToken)
            : await remote.OpenDataAsync(buildId, cancellationToken);

    public Task<ILayerUpload> BeginUploadAsync(Guid buildId, CancellationToken cancellationToken) => local.BeginUploadAsync(buildId, cancellationToken);

    public Task<byte[]?> TryReadStampAsync(Guid buildId, CancellationToken cancellationToken) => local.TryReadStampAsync(buildId, cancellationToken);

    public Task<bool> TryWriteStampAsync(Guid buildId, ReadOnlyMemory<byte> stamp, CancellationToken cancellationToken) => local.TryWriteStampAsync(buildId, stamp, cancellationToken);

    public Task DeleteStampAsync(Guid buildId, CancellationToken cancellationToken) => local.DeleteStampAsync(buildId, cancellationToken);

    public Task DeleteAsync(Guid buildId, CancellationToken cancellationToken) => local.DeleteAsync(buildId, cancellationToken);

    public void Dispose() => (remote as IDisposable)?.Dispose();
}
