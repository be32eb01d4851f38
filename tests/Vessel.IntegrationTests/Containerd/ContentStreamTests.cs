namespace Vessel.IntegrationTests.Containerd;

[Collection(ContainerdCollection.Name)]
public sealed class ContentStreamTests(ContainerdFixture ctrd) : TimedTestBase(ContainerdFixture.TestTimeout)
{
    [ContainerdFact]
    public async Task A_content_store_blob_streams_like_every_read_stream_over_the_grpc_client()
    {
        using var client = new ContainerdClient(ctrd.Socket, ContainerdFixture.Namespace);
        ContainerdImage image = await ContainerdImage.ResolveAsync(client, ContainerdFixture.MultiImage, Deadline);
        string digest = image.Layers[^1].Digest;
        // The oracle: the blob file in containerd's own content store, under the fixture's root.
        string blob = Path.Combine(ctrd.Root, "root", "io.containerd.content.v1.content", "blobs", "sha256", digest["sha256:".Length..]);
        byte[] expected = await File.ReadAllBytesAsync(blob, Deadline);
        Assert.True(expected.Length > 1000, "the blob should span several reads");

        await ReadStreamChecks.RunAllAsync(() => Task.FromResult<(Stream, byte[])>((new ContentStream(client, OciDigest.Parse(digest, "a layer")), expected)));
    }

    [ContainerdFact]
    public async Task A_missing_blob_fails_with_not_found_naming_the_call()
    {
        using var client = new ContainerdClient(ctrd.Socket, ContainerdFixture.Namespace);
        await using var stream = new ContentStream(client, OciDigest.Parse("sha256:" + new string('0', 64), "a missing blob"));
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => stream.ReadAsync(new byte[16], Deadline).AsTask());
        Assert.Equal(VesselErrorReason.NotFound, e.Reason);
        Assert.StartsWith("containerd Content/Read: NotFound:", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_socket_nobody_listens_on_is_unavailable_and_says_where_it_looked()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"vessel-no-ctrd-{Guid.NewGuid():N}.sock");
        using var client = new ContainerdClient(socket, "default");
        VesselException e = await Assert.ThrowsAsync<VesselException>(() => client.VersionAsync(CancellationToken.None));
        Assert.Equal(VesselErrorReason.Unavailable, e.Reason);
        Assert.Contains(socket, e.Message, StringComparison.Ordinal);
        Assert.Contains("Is containerd running?", e.Message, StringComparison.Ordinal);
    }
}
