namespace Vessel.Tests.Oci;

public sealed class ImageSourceTests : IDisposable
{
    private const int Timeout = 30_000;
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-oci-test-");
    private readonly CancellationToken _ct = CancellationToken.None;

    public void Dispose() => _dir.Dispose();

    private static TestImage TwoLayers() => new TestImage()
        .AddLayer(TestImage.Tar(("etc/hostname", "one\n"), ("bin/a", "aaa")))
        .AddLayer(TestImage.Tar(("etc/hostname", "two\n")), gzip: false);

    /// <summary><see cref="TwoLayers"/> with a manifest, in an OCI layout whose index tags it v1.</summary>
    private (TestImage Image, byte[] Manifest, string Layout) TwoLayerLayout()
    {
        TestImage img = TwoLayers();
        byte[] manifest = img.AddManifest();
        return (img, manifest, WriteLayout(img, manifest));
    }

    /// <summary>Writes <paramref name="img"/> as the OCI layout "layout", its index tagging <paramref name="manifest"/> v1.</summary>
    private string WriteLayout(TestImage img, byte[] manifest)
    {
        string layout = _dir.Combine("layout");
        img.WriteLayout(layout, TestImage.IndexJson(TestImage.Tagged(manifest, "v1")));
        return layout;
    }

    /// <summary>Resolves <paramref name="reference"/> and reads layer <paramref name="index"/> to its end, which must fail with bad data.</summary>
    private async Task<InvalidDataException> LayerReadFailsAsync(string reference, int index = 0)
    {
        await using IImageSource source = await OpenAsync(reference);
        await source.ResolveAsync(_ct);
        await using Stream layer = await source.OpenLayerAsync(index, _ct);
        return await Assert.ThrowsAsync<InvalidDataException>(() => TestImage.ReadAllAsync(layer, _ct));
    }

    private Task<IImageSource> OpenAsync(string reference) => ImageSources.OpenAsync(reference, ImageSourceOptions.Default, _ct);

    /// <summary>Asserts that <paramref name="source"/> yields <paramref name="img"/>'s layers, uncompressed, in order.</summary>
    private async Task AssertLayersAsync(IImageSource source, TestImage img)
    {
        var layers = await ReadAllLayersAsync(source, _ct);
        Assert.Equal(img.Layers.Count, layers.Count);
        for (int i = 0; i < layers.Count; i++)
        {
            Assert.Equal(img.Layers[i].Tar, layers[i]);
        }
    }

    private static async Task<List<byte[]>> ReadAllLayersAsync(IImageSource source, CancellationToken ct)
    {
        ResolvedImage image = await source.ResolveAsync(ct);
        var result = new List<byte[]>();
        for (int i = 0; i < image.Layers.Count; i++)
        {
            await using Stream layer = await source.OpenLayerAsync(i, ct);
            result.Add(await TestImage.ReadAllAsync(layer, ct));
        }
        return result;
    }

    [Fact(Timeout = Timeout)]
    public async Task Layout_directory_yields_config_and_uncompressed_layers()
    {
        (TestImage img, byte[] manifest, string layout) = TwoLayerLayout();

        await using IImageSource source = await OpenAsync(layout);
        ResolvedImage image = await source.ResolveAsync(_ct);
        Assert.Equal(TestImage.Digest(manifest), image.ManifestDigest);
        Assert.Equal(image.ManifestDigest, image.ContentDigest);
        Assert.Equal(["/bin/sh"], image.Config.Cmd);
        Assert.Equal("/root", image.Config.WorkingDir);
        Assert.Equal(2, image.Layers.Count);
        Assert.Equal(OciMediaTypes.LayerGzip, image.Layers[0].MediaType);
        await AssertLayersAsync(source, img);
    }

    [Fact(Timeout = Timeout)]
    public async Task Layout_selects_by_tag_and_by_digest_and_lists_what_it_has()
    {
        TestImage a = new TestImage().AddLayer(TestImage.Tar(("a", "a")));
        TestImage b = new TestImage().AddLayer(TestImage.Tar(("b", "b")));
        byte[] ma = a.AddManifest();
        byte[] mb = b.AddManifest();
        foreach (var blob in b.Blobs)
        {
            a.Blobs[blob.Key] = blob.Value;
        }
        string layout = _dir.Combine("layout");
        a.WriteLayout(layout, TestImage.IndexJson(TestImage.Tagged(ma, "a"), TestImage.Tagged(mb, "b")));

        await using (IImageSource byTag = await OpenAsync(layout + ":b"))
        {
            Assert.Equal(TestImage.Digest(mb), (await byTag.ResolveAsync(_ct)).ManifestDigest);
        }
        await using (IImageSource byDigest = await OpenAsync($"oci:{layout}@{TestImage.Digest(ma)}"))
        {
            Assert.Equal(TestImage.Digest(ma), (await byDigest.ResolveAsync(_ct)).ManifestDigest);
        }
        await using IImageSource ambiguous = await OpenAsync(layout);
        var e = await Assert.ThrowsAsync<VesselException>(() => ambiguous.ResolveAsync(_ct));
        Assert.Contains("holds 2 images", e.Message, StringComparison.Ordinal);
        Assert.Contains("'a'", e.Message, StringComparison.Ordinal);
        await using IImageSource missing = await OpenAsync($"oci:{layout}:nope");
        e = await Assert.ThrowsAsync<VesselException>(() => missing.ResolveAsync(_ct));
        Assert.Equal(VesselErrorReason.NotFound, e.Reason);
    }

    [Fact(Timeout = Timeout)]
    public async Task Index_picks_linux_amd64_and_refuses_an_index_without_it()
    {
        TestImage amd = new TestImage().AddLayer(TestImage.Tar(("amd", "x")));
        byte[] amdManifest = amd.AddManifest();
        TestImage arm = new TestImage { Architecture = "arm64" }.AddLayer(TestImage.Tar(("arm", "x")));
        byte[] armManifest = arm.AddManifest();
        foreach (var blob in arm.Blobs)
        {
            amd.Blobs[blob.Key] = blob.Value;
        }
        byte[] both = amd.AddBlob(TestImage.IndexJson(TestImage.ForPlatform(armManifest, "arm64"), TestImage.ForPlatform(amdManifest, "amd64")));
        byte[] armOnly = amd.AddBlob(TestImage.IndexJson(TestImage.ForPlatform(armManifest, "arm64"), TestImage.ForPlatform(armManifest, "s390x")));
        string layout = _dir.Combine("layout");
        amd.WriteLayout(layout, TestImage.IndexJson(
            TestImage.Descriptor(OciMediaTypes.ImageIndex, both, new() { ["annotations"] = new Dictionary<string, string> { [OciDescriptor.RefNameAnnotation] = "multi" } }),
            TestImage.Descriptor(OciMediaTypes.ImageIndex, armOnly, new() { ["annotations"] = new Dictionary<string, string> { [OciDescriptor.RefNameAnnotation] = "armonly" } }),
            TestImage.Tagged(armManifest, "armsingle")));

        await using (IImageSource multi = await OpenAsync(layout + ":multi"))
        {
            ResolvedImage image = await multi.ResolveAsync(_ct);
            Assert.Equal(TestImage.Digest(amdManifest), image.ManifestDigest);
            Assert.Equal(amd.Layers[0].Tar, (await ReadAllLayersAsync(multi, _ct))[0]);
        }
        await using (IImageSource armOnlySource = await OpenAsync(layout + ":armonly"))
        {
            var e = await Assert.ThrowsAsync<VesselException>(() => armOnlySource.ResolveAsync(_ct));
            Assert.Equal(VesselErrorReason.Unsupported, e.Reason);
            Assert.Contains("no linux/amd64 image", e.Message, StringComparison.Ordinal);
            Assert.Contains("linux/arm64, linux/s390x", e.Message, StringComparison.Ordinal);
        }
        await using IImageSource single = await OpenAsync(layout + ":armsingle");
        var e2 = await Assert.ThrowsAsync<VesselException>(() => single.ResolveAsync(_ct));
        Assert.Contains("built for linux/arm64", e2.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = Timeout)]
    public async Task Tampered_blob_fails_on_the_read_that_reaches_the_end_naming_layer_and_both_digests()
    {
        (TestImage img, _, string layout) = TwoLayerLayout();
        string expected = TestImage.Digest(img.Layers[1].Blob);
        string blobPath = Path.Combine(layout, "blobs", "sha256", expected["sha256:".Length..]);
        byte[] tampered = TestImage.Tar(("etc/hostname", "EVIL\n"));
        Assert.Equal(img.Layers[1].Blob.Length, tampered.Length);
        File.WriteAllBytes(blobPath, tampered);

        await using IImageSource source = await OpenAsync(layout);
        await source.ResolveAsync(_ct);
        await using Stream layer = await source.OpenLayerAsync(1, _ct);
        byte[] buffer = new byte[512];
        long total = 0;
        var e = await Assert.ThrowsAsync<InvalidDataException>(async () =>
        {
            int n;
            while ((n = await layer.ReadAsync(buffer, _ct)) > 0)
            {
                total += n;
            }
        });
        Assert.Equal(tampered.Length, total); // every byte was delivered; the end is what fails
        Assert.Contains("layer 2 of 2", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Contains(TestImage.Digest(tampered), e.Message, StringComparison.Ordinal);
        // The failure is sticky.
        await Assert.ThrowsAsync<InvalidDataException>(async () => _ = await layer.ReadAsync(buffer, _ct));
    }

    [Fact(Timeout = Timeout)]
    public async Task A_blob_longer_or_shorter_than_declared_fails()
    {
        TestImage img = new TestImage().AddLayer(TestImage.Tar(("a", "a")), gzip: false);
        byte[] manifest = img.AddManifest();
        string layout = WriteLayout(img, manifest);
        string blobPath = Path.Combine(layout, "blobs", "sha256", TestImage.Digest(img.Layers[0].Blob)["sha256:".Length..]);

        File.WriteAllBytes(blobPath, [.. img.Layers[0].Blob, .. new byte[4096]]);
        Assert.Contains("longer than", (await LayerReadFailsAsync(layout)).Message, StringComparison.Ordinal);
        File.WriteAllBytes(blobPath, img.Layers[0].Blob[..1000]);
        Assert.Contains("truncated", (await LayerReadFailsAsync(layout)).Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = Timeout)]
    public async Task Diff_id_mismatch_is_caught_even_when_the_blob_digest_matches()
    {
        TestImage img = new TestImage().AddLayer(TestImage.Tar(("a", "a")));
        byte[] config = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(img.ConfigJson()).Replace(TestImage.Digest(img.Layers[0].Tar), "sha256:" + new string('0', 64), StringComparison.Ordinal));
        byte[] manifest = img.AddManifest(config: config);
        string layout = WriteLayout(img, manifest);
        var e = await LayerReadFailsAsync(layout);
        Assert.Contains("diff_id", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = Timeout)]
    public async Task Corrupt_gzip_fails_naming_the_layer()
    {
        var rnd = new Random(7);
        byte[] content = new byte[200_000];
        rnd.NextBytes(content);
        TestImage img = new TestImage().AddLayer(TestImage.Tar(("big", Convert.ToBase64String(content))));
        byte[] blob = img.Layers[0].Blob;
        for (int i = 100; i < 400; i++)
        {
            blob[i] ^= 0x5a; // corrupt the deflate data, then re-describe the blob so only the gzip is wrong
        }
        byte[] manifest = img.AddManifest();
        string layout = WriteLayout(img, manifest);
        var e = await LayerReadFailsAsync(layout);
        Assert.Contains("layer 1 of 1", e.Message, StringComparison.Ordinal);
        Assert.Contains(layout, e.Message, StringComparison.Ordinal);
        Assert.Contains("gzip data is corrupt", e.Message, StringComparison.Ordinal); // the digest matched: the image itself is broken
    }

    [Fact(Timeout = Timeout)]
    public async Task Absurd_document_sizes_and_malformed_json_are_refused_with_the_document_named()
    {
        TestImage img = new TestImage().AddLayer(TestImage.Tar(("a", "a")));
        byte[] config = img.ConfigJson();
        img.AddManifest();
        var hugeConfig = TestImage.Descriptor(OciMediaTypes.ImageConfig, config);
        hugeConfig["size"] = 5L << 30;
        byte[] manifest = img.AddBlob(Encoding.UTF8.GetBytes(System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = OciMediaTypes.ImageManifest,
            ["config"] = hugeConfig,
            ["layers"] = new[] { TestImage.Descriptor(OciMediaTypes.LayerGzip, img.Layers[0].Blob) },
        })));
        byte[] broken = img.AddBlob("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":"u8.ToArray());
        string layout = _dir.Combine("layout");
        img.WriteLayout(layout, TestImage.IndexJson(TestImage.Tagged(manifest, "huge"), TestImage.Tagged(broken, "broken")));

        await using (IImageSource source = await OpenAsync(layout + ":huge"))
        {
            var e = await Assert.ThrowsAsync<InvalidDataException>(() => source.ResolveAsync(_ct));
            Assert.Contains("config " + TestImage.Digest(config), e.Message, StringComparison.Ordinal);
            Assert.Contains("4 MiB", e.Message, StringComparison.Ordinal);
        }
        await using (IImageSource source = await OpenAsync(layout + ":broken"))
        {
            var e = await Assert.ThrowsAsync<InvalidDataException>(() => source.ResolveAsync(_ct));
            Assert.Contains("manifest " + TestImage.Digest(broken), e.Message, StringComparison.Ordinal);
            Assert.Contains("not valid JSON", e.Message, StringComparison.Ordinal);
        }
        File.WriteAllText(Path.Combine(layout, "index.json"), "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:../../../../etc/passwd\",\"size\":1}]}");
        await using (IImageSource source = await OpenAsync(layout))
        {
            var e = await Assert.ThrowsAsync<InvalidDataException>(() => source.ResolveAsync(_ct));
            Assert.Contains("index.json", e.Message, StringComparison.Ordinal);
            Assert.Contains("not a digest", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact(Timeout = Timeout)]
    public async Task Oci_archive_is_read_in_place_and_rejects_escaping_member_names()
    {
        TestImage img = TwoLayers();
        byte[] manifest = img.AddManifest();
        string archive = _dir.Combine("img.tar");
        img.WriteOciArchive(archive, TestImage.IndexJson(TestImage.Tagged(manifest, "v1")));
        await using (IImageSource source = await OpenAsync(archive))
        {
            await AssertLayersAsync(source, img);
        }
        await using (IImageSource source = await OpenAsync($"oci-archive:{archive}:v1"))
        {
            Assert.Equal(TestImage.Digest(manifest), (await source.ResolveAsync(_ct)).ManifestDigest);
        }
        Assert.Equal([archive], Directory.GetFiles(_dir.Path)); // nothing extracted

        string evil = _dir.Combine("evil.tar");
        img.WriteOciArchive(evil, TestImage.IndexJson(TestImage.Tagged(manifest, "v1")), ("../../escape", "x"u8.ToArray()));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => OpenAsync(evil));
        Assert.Contains("../../escape", e.Message, StringComparison.Ordinal);
        e = await Assert.ThrowsAsync<InvalidDataException>(() => OpenAsync("oci-archive:" + evil));
        Assert.Contains("escapes the archive root", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = Timeout)]
    public async Task Docker_archive_checks_layers_against_diff_ids()
    {
        TestImage img = TwoLayers();
        string archive = _dir.Combine("docker.tar");
        img.WriteDockerArchive(archive, "example/app:1");
        await using (IImageSource source = await OpenAsync(archive + ":example/app:1"))
        {
            ResolvedImage image = await source.ResolveAsync(_ct);
            Assert.Null(image.ManifestDigest);
            Assert.Equal(TestImage.Digest(img.ConfigJson()), image.ContentDigest);
            var layers = await ReadAllLayersAsync(source, _ct);
            Assert.Equal(img.Layers[0].Tar, layers[0]);
        }
        string tampered = _dir.Combine("tampered.tar");
        img.WriteDockerArchive(tampered, "example/app:1", tamper: (i, tar) => i == 1 ? TestImage.Tar(("etc/hostname", "EVIL\n")) : tar);
        await using IImageSource bad = await OpenAsync("docker-archive:" + tampered);
        await bad.ResolveAsync(_ct);
        await using Stream layer = await bad.OpenLayerAsync(1, _ct);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => TestImage.ReadAllAsync(layer, _ct));
        Assert.Contains("layer 2 of 2", e.Message, StringComparison.Ordinal);
        Assert.Contains(TestImage.Digest(img.Layers[1].Tar), e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = Timeout)]
    public async Task Docker_archive_follows_layer_symlinks_inside_the_archive_only()
    {
        TestImage img = new TestImage().AddLayer(TestImage.Tar(("a", "a")), gzip: false);
        byte[] config = img.ConfigJson();
        string hex = TestImage.Digest(img.Layers[0].Tar)["sha256:".Length..];
        string configName = TestImage.Digest(config)["sha256:".Length..] + ".json";
        string Archive(string name, string linkTarget)
        {
            string file = _dir.Combine(name);
            using var fs = File.Create(file);
            using var writer = new System.Formats.Tar.TarWriter(fs, System.Formats.Tar.TarEntryFormat.Pax);
            writer.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, hex + ".tar") { DataStream = new MemoryStream(img.Layers[0].Tar) });
            writer.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.SymbolicLink, "dup/layer.tar") { LinkName = linkTarget });
            writer.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, configName) { DataStream = new MemoryStream(config) });
            byte[] manifest = Encoding.UTF8.GetBytes($"[{{\"Config\":\"{configName}\",\"RepoTags\":[\"x:1\"],\"Layers\":[\"dup/layer.tar\"]}}]");
            writer.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "manifest.json") { DataStream = new MemoryStream(manifest) });
            return file;
        }

        await using (IImageSource source = await OpenAsync(Archive("ok.tar", $"../{hex}.tar")))
        {
            Assert.Equal(img.Layers[0].Tar, (await ReadAllLayersAsync(source, _ct))[0]);
        }
        await using IImageSource escaping = await OpenAsync(Archive("bad.tar", "../../etc/passwd"));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => escaping.ResolveAsync(_ct));
        Assert.Contains("points outside the archive", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("busybox-image")]
    public async Task Busybox_test_tarball_streams_as_one_layer_with_the_file_digest()
    {
        using var cts = new CancellationTokenSource(Timeout);
        string tarball = TestImages.BusyboxTarball;
        await using IImageSource source = await ImageSources.OpenAsync(tarball, ImageSourceOptions.Default, cts.Token);
        ResolvedImage image = await source.ResolveAsync(cts.Token);
        await using (var file = File.OpenRead(tarball))
        {
            Assert.Equal("sha256:" + Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(file, cts.Token)), image.ContentDigest);
        }
        await using Stream layer = await source.OpenLayerAsync(0, cts.Token);
        var names = new List<string>();
        await using (var reader = new System.Formats.Tar.TarReader(layer, leaveOpen: true))
        {
            System.Formats.Tar.TarEntry? entry;
            while ((entry = await reader.GetNextEntryAsync(cancellationToken: cts.Token)) is not null)
            {
                names.Add(entry.Name.TrimStart('.', '/'));
            }
        }
        // The contract: after the tar end marker, read on to the end of the stream (record padding), where the checks run.
        await layer.CopyToAsync(Stream.Null, cts.Token);
        Assert.Equal(0, await layer.ReadAsync(new byte[1], cts.Token));
        Assert.Contains("etc/os-release", names);
        Assert.Contains("bin/busybox", names);
    }

    [Fact(Timeout = Timeout)]
    public async Task Rootfs_tarball_is_one_layer_with_an_empty_config_and_the_file_digest()
    {
        byte[] tar = TestImage.Tar(("etc/os-release", "ID=test\n"));
        byte[] gz = LayersImageSource.Gzip(tar);
        string file = _dir.Combine("rootfs.tar.gz");
        File.WriteAllBytes(file, gz);
        await using IImageSource source = await OpenAsync(file);
        ResolvedImage image = await source.ResolveAsync(_ct);
        Assert.Null(image.ManifestDigest);
        Assert.Equal(TestImage.Digest(gz), image.ContentDigest);
        Assert.Empty(image.Config.Env);
        Assert.Single(image.Layers);
        Assert.Equal(tar, (await ReadAllLayersAsync(source, _ct))[0]);
    }

    [Fact(Timeout = Timeout)]
    public async Task Truncated_gzip_tarball_is_reported_as_truncated_although_GZipStream_stays_silent()
    {
        var rnd = new Random(3);
        byte[] content = new byte[300_000];
        rnd.NextBytes(content);
        byte[] gz = LayersImageSource.Gzip(TestImage.Tar(("blob", Convert.ToBase64String(content))));
        string file = _dir.Combine("cut.tar.gz");
        File.WriteAllBytes(file, gz[..(gz.Length / 2)]);
        var e = await LayerReadFailsAsync(file);
        Assert.Contains("gzip data is truncated", e.Message, StringComparison.Ordinal);
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("zstd")]
    public async Task Zstd_layers_decode_through_the_zstd_tool_and_bad_ones_fail()
    {
        using var cts = new CancellationTokenSource(Timeout);
        byte[] tar = TestImage.Tar(("z", "zstd layer"));
        string plain = _dir.Combine("layer.tar");
        File.WriteAllBytes(plain, tar);
        (await ExternalProcess.RunAsync("zstd", ["-q", "-f", plain, "-o", plain + ".zst"], cts.Token)).EnsureSuccess();
        byte[] zst = File.ReadAllBytes(plain + ".zst");
        var img = new TestImage();
        img.Layers.Add((zst, tar, OciMediaTypes.LayerZstd));
        byte[] manifest = img.AddManifest();
        string layout = WriteLayout(img, manifest);
        await using (IImageSource source = await ImageSources.OpenAsync(layout, ImageSourceOptions.Default, cts.Token))
        {
            Assert.Equal(tar, (await ReadAllLayersAsync(source, cts.Token))[0]);
        }

        byte[] bad = [.. zst[..8], .. new byte[64], .. zst[8..]];
        var badImg = new TestImage();
        badImg.Layers.Add((bad, tar, OciMediaTypes.LayerZstd));
        byte[] badManifest = badImg.AddManifest();
        string badLayout = _dir.Combine("bad");
        badImg.WriteLayout(badLayout, TestImage.IndexJson(TestImage.Tagged(badManifest, "v1")));
        await using IImageSource badSource = await ImageSources.OpenAsync(badLayout, ImageSourceOptions.Default, cts.Token);
        await badSource.ResolveAsync(cts.Token);
        await using Stream layer = await badSource.OpenLayerAsync(0, cts.Token);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => TestImage.ReadAllAsync(layer, cts.Token));
        Assert.Contains("zstd", e.Message, StringComparison.Ordinal);
        Assert.Contains("layer 1 of 1", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = Timeout)]
    public async Task Sources_that_do_not_exist_or_are_not_images_say_so()
    {
        var e = await Assert.ThrowsAsync<VesselException>(() => OpenAsync("./no/such.tar"));
        Assert.Equal(VesselErrorReason.NotFound, e.Reason);
        string plainDir = _dir.Combine("plain");
        Directory.CreateDirectory(plainDir);
        e = await Assert.ThrowsAsync<VesselException>(() => OpenAsync(plainDir));
        Assert.Contains("not an OCI image layout", e.Message, StringComparison.Ordinal);
        string junk = _dir.Combine("junk.bin");
        File.WriteAllBytes(junk, Enumerable.Repeat((byte)'x', 2048).ToArray());
        var e2 = await Assert.ThrowsAsync<InvalidDataException>(() => OpenAsync(junk));
        Assert.Contains("not a tar archive", e2.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = Timeout)]
    public async Task Cancellation_stops_a_layer_read()
    {
        (_, _, string layout) = TwoLayerLayout();
        await using IImageSource source = await OpenAsync(layout);
        await source.ResolveAsync(_ct);
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => source.OpenLayerAsync(0, cts.Token));
    }
}
