namespace Vessel.IntegrationTests.Blocks;

/// <summary>
/// The layer store in an S3-compatible bucket (a real s3rver on loopback): builds put in
/// chunks with a chunk index, read back chunk by chunk on demand, checked, cached with a bound,
/// and copied between a directory and a bucket with their chains.
/// </summary>
public sealed class ObjectStoreTests() : S3TestBase("vessel-s3-it-")
{
    private async Task<(string Path, byte[] Bytes)> RandomImageAsync(string name, int megabytes, int seed)
    {
        // Random data in two of every three 4 KiB blocks, zeros in the rest (zero blocks are not stored).
        byte[] bytes = new byte[megabytes << 20];
        var rng = new Random(seed);
        for (int b = 0; b < bytes.Length / 4096; b++)
        {
            if (b % 3 != 0)
            {
                rng.NextBytes(bytes.AsSpan(b * 4096, 4096));
            }
        }
        string path = Dir.Combine(name);
        await File.WriteAllBytesAsync(path, bytes);
        return (path, bytes);
    }

    /// <summary>
    /// A random image (<see cref="RandomImageAsync"/>) imported into the bucket under
    /// <paramref name="prefix"/> by a writer of its own, gone before the test reads: the build's
    /// header and the image's bytes.
    /// </summary>
    private async Task<(BuildHeader Header, byte[] Bytes)> PutRandomImageAsync(string prefix, int megabytes, int seed, CancellationToken ct)
    {
        (string image, byte[] bytes) = await RandomImageAsync(prefix + ".raw", megabytes, seed);
        using var writer = new S3LayerStorage(Server.Options(prefix, Dir.Combine("cache-" + prefix + "w"), Chunk));
        return (await new LayerStore(writer).ImportAsync(image, 4096, null, ct), bytes);
    }

    private static async Task<byte[]> ReadAllAsync(Build build)
    {
        byte[] all = new byte[build.Size];
        await build.ReadAsync(0, all, CancellationToken.None);
        return all;
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task A_build_put_in_a_bucket_reads_back_whole_and_fetches_only_the_chunks_it_reads()
    {
        CancellationToken ct = CancellationToken.None;
        (BuildHeader header, byte[] bytes) = await PutRandomImageAsync("a", 4, 1, ct);
        int chunks = ChunkIndex.CountFor(header.DataLength, Chunk);
        Assert.True(chunks > 10, $"{chunks} chunks");

        // Another node: an empty cache. One 4 KiB read at the middle fetches one chunk.
        using var reader = new S3LayerStorage(Server.Options("a", Dir.Combine("cache-r"), Chunk));
        var store = new LayerStore(reader);
        Assert.Equal([header.BuildId], await reader.ListAsync(ct));
        using (Build build = await store.OpenAsync(header.BuildId, ct))
        {
            byte[] block = new byte[4096];
            await build.ReadAsync((2L << 20) + 8192, block, ct); // block 514: a data block (every third one is zeros)
            Assert.True(block.AsSpan().SequenceEqual(bytes.AsSpan((2 << 20) + 8192, 4096)));
            Assert.Equal(1, reader.Cache.Fetches);
            Assert.True(reader.Cache.FetchedBytes <= Chunk);

            Assert.True((await ReadAllAsync(build)).AsSpan().SequenceEqual(bytes));
            Assert.Equal(chunks, reader.Cache.Fetches);
            Assert.Equal(header.DataLength, reader.Cache.FetchedBytes);

            // A second full read comes from the cache.
            Assert.True((await ReadAllAsync(build)).AsSpan().SequenceEqual(bytes));
            Assert.Equal(chunks, reader.Cache.Fetches);
        }

        // The whole-file check still works against the bucket.
        await store.VerifyAsync(header.BuildId, ct);
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task A_damaged_chunk_in_the_bucket_is_refused_naming_the_chunk()
    {
        CancellationToken ct = CancellationToken.None;
        (string image, _) = await RandomImageAsync("b.raw", 1, 2);
        using var storage = new S3LayerStorage(Server.Options("b", Dir.Combine("cache-b"), Chunk));
        BuildHeader header = await new LayerStore(storage).ImportAsync(image, 4096, null, ct);

        // Overwrite chunk 3 through the server's own API with bytes of the same length.
        byte[] garbage = RandomNumberGenerator.GetBytes(Chunk);
        await storage.PutAsync(storage.Key(header.BuildId, S3LayerStorage.ChunkName(3)), garbage, ct);

        using var fresh = new S3LayerStorage(Server.Options("b", Dir.Combine("cache-b2"), Chunk));
        using Build build = await new LayerStore(fresh).OpenAsync(header.BuildId, ct);
        var e = await Assert.ThrowsAsync<VesselException>(() => ReadAllAsync(build));
        Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
        Assert.Contains("chunk 3", e.Message, StringComparison.Ordinal);
        Assert.Contains("does not match its SHA-256", e.Message, StringComparison.Ordinal);
        // Nothing unverified was cached.
        Assert.Null(fresh.Cache.TryGet(header.BuildId, 3));
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task The_chunk_cache_stays_within_its_bound()
    {
        CancellationToken ct = CancellationToken.None;
        (_, byte[] bytes) = await PutRandomImageAsync("c", 2, 3, ct);
        string cache = Dir.Combine("cache-small");
        using var reader = new S3LayerStorage(Server.Options("c", cache, Chunk, cacheBytes: 4 * Chunk));
        var store = new LayerStore(reader);
        Guid id = (await reader.ListAsync(ct)).Single();
        using Build build = await store.OpenAsync(id, ct);
        Assert.True((await ReadAllAsync(build)).AsSpan().SequenceEqual(bytes));
        Assert.True(reader.Cache.Bytes <= 4 * Chunk, $"{reader.Cache.Bytes} bytes cached");
        long onDisk = Directory.EnumerateFiles(cache, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.True(onDisk <= 4 * Chunk, $"{onDisk} bytes on disk");

        // A new process adopts what is cached (and its bound) instead of fetching it again.
        using var again = new S3LayerStorage(Server.Options("c", cache, Chunk, cacheBytes: 4 * Chunk));
        Assert.Equal(onDisk, again.Cache.Bytes);
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task A_chain_copies_to_the_bucket_and_back_with_its_ids_and_skips_what_is_there()
    {
        CancellationToken ct = CancellationToken.None;
        (string image, byte[] bytes) = await RandomImageAsync("d.raw", 2, 4);
        LayerStore local = LayerStore.OpenDirectory(Dir.Combine("local"));
        BuildHeader baseHeader = await local.ImportAsync(image, 4096, null, ct);
        // A layer on top: 3 blocks changed.
        RandomNumberGenerator.Fill(bytes.AsSpan(8192, 3 * 4096));
        await File.WriteAllBytesAsync(image, bytes, ct);
        BuildHeader layer = await BlockDiff.ExportImageAsync(local, baseHeader.BuildId, image, Dir.Combine("work"), null, ct);

        using var bucket = new S3LayerStorage(Server.Options("d", Dir.Combine("cache-d"), Chunk));
        var remote = new LayerStore(bucket);
        LayerCopy.Result pushed = await LayerCopy.CopyAsync(local, remote, layer.BuildId, null, ct);
        Assert.Equal(2, pushed.Builds);
        Assert.Equal(0, (await LayerCopy.CopyAsync(local, remote, layer.BuildId, null, ct)).Builds);

        LayerStore pulledStore = LayerStore.OpenDirectory(Dir.Combine("pulled"));
        LayerCopy.Result pulled = await LayerCopy.CopyAsync(remote, pulledStore, layer.BuildId, null, ct);
        Assert.Equal(2, pulled.Builds);
        await pulledStore.VerifyAsync(layer.BuildId, ct);
        using Build build = await pulledStore.OpenAsync(layer.BuildId, ct);
        Assert.True((await ReadAllAsync(build)).AsSpan().SequenceEqual(bytes));
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task Concurrent_readers_of_one_chunk_fetch_it_once()
    {
        CancellationToken ct = CancellationToken.None;
        (_, byte[] bytes) = await PutRandomImageAsync("h", 1, 6, ct);
        using var reader = new S3LayerStorage(Server.Options("h", Dir.Combine("cache-h"), Chunk));
        Guid id = (await reader.ListAsync(ct)).Single();
        using Build build = await new LayerStore(reader).OpenAsync(id, ct);
        byte[][] results = await Task.WhenAll(Enumerable.Range(0, 16).Select(async i =>
        {
            byte[] block = new byte[4096];
            await build.ReadAsync(4096L * (1 + (i % 2)), block, ct); // blocks 1 and 2: data, one chunk
            return block;
        }));
        Assert.Equal(1, reader.Cache.Fetches);
        for (int i = 0; i < results.Length; i++)
        {
            Assert.True(results[i].AsSpan().SequenceEqual(bytes.AsSpan(4096 * (1 + (i % 2)), 4096)), $"reader {i}");
        }
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task An_upload_that_is_not_committed_leaves_nothing_in_the_bucket()
    {
        CancellationToken ct = CancellationToken.None;
        using var storage = new S3LayerStorage(Server.Options("e", Dir.Combine("cache-e"), Chunk));
        var id = Guid.NewGuid();
        await using (ILayerUpload upload = await storage.BeginUploadAsync(id, ct))
        {
            await upload.AppendAsync(RandomNumberGenerator.GetBytes(5 * Chunk), ct);
        }
        Assert.Empty(await storage.ListAsync(ct));
        Assert.Null(await storage.TryReadHeaderAsync(id, ct));
        // And no stray chunk either: a fresh upload of the same id finds an empty prefix.
        await storage.DeletePrefixAsync(storage.Key(id, ""), ct);
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task A_dead_endpoint_gives_one_clear_error_naming_it()
    {
        CancellationToken ct = CancellationToken.None;
        S3StoreOptions options = Server.Options("f", Dir.Combine("cache-f"), Chunk);
        Assert.True(Server.IsRunning);
        Server.Stop();
        Assert.False(Server.IsRunning, "s3rver outlived its Stop");
        using var storage = new S3LayerStorage(options);
        var e = await Assert.ThrowsAsync<VesselException>(() => storage.ListAsync(ct));
        Assert.Equal(VesselErrorReason.Unavailable, e.Reason);
        Assert.Contains(options.Endpoint.ToString(), e.Message, StringComparison.Ordinal);
        Assert.Contains("VESSEL_S3_", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("npm", "node", Timeout = 240_000)]
    public async Task The_cli_pushes_to_a_bucket_and_flattens_from_it()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        (string image, byte[] bytes) = await RandomImageAsync("g.raw", 2, 5);
        var env = new Dictionary<string, string>(Server.Environment) { ["VESSEL_HOME"] = Dir.Combine("home") };
        async Task<string> Vessel(params string[] args)
        {
            ProcessResult r = await ExternalProcess.RunAsync("dotnet", [VesselCli.DllPath, .. args], ct, environment: env);
            Assert.True(r.ExitCode == 0, $"vessel {string.Join(' ', args)} failed: {r.StandardError}");
            return r.StandardOutput.Trim();
        }
        string local = Dir.Combine("cli-local");
        string id = await Vessel("blocks", "import", image, "--store", local);
        Assert.Equal(id, await Vessel("blocks", "copy", id, "--from", local, "--to", $"s3://{Server.Bucket}/cli"));
        Assert.Contains(id, await Vessel("blocks", "list", "--store", $"s3://{Server.Bucket}/cli"), StringComparison.Ordinal);
        string flat = Dir.Combine("g-flat.raw");
        await Vessel("blocks", "flatten", id, flat, "--store", $"s3://{Server.Bucket}/cli");
        Assert.True((await File.ReadAllBytesAsync(flat, ct)).AsSpan().SequenceEqual(bytes));

        // Without the endpoint settings: one line that says what to set.
        ProcessResult bad = await ExternalProcess.RunAsync("dotnet", [VesselCli.DllPath, "blocks", "list", "--store", "s3://vessel/cli"], ct,
            environment: new Dictionary<string, string> { ["VESSEL_S3_ENDPOINT"] = "", ["VESSEL_HOME"] = Dir.Combine("home") });
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("set VESSEL_S3_ENDPOINT", bad.StandardError, StringComparison.Ordinal);
    }
}
