using System.Formats.Tar;
using System.Text.Json;

namespace Vessel.IntegrationTests.Oci;

/// <summary>
/// Images built with umoci, converted with skopeo, and served by a real registry
/// (docker-registry): every source form must yield the same config and the same layers.
/// </summary>
public sealed class RealImageTests
{
    private const int Timeout = 180_000;

    /// <summary>
    /// A three-layer image (files, a long name, then a whiteout) and an arm64 image in one
    /// layout, built with umoci unpack/repack. (umoci 0.4.7's insert writes layers without
    /// the final padding and end-of-archive blocks, so it is not used here.)
    /// </summary>
    private static async Task<string> BuildLayoutAsync(TempDirectory dir, CancellationToken ct)
    {
        string layout = dir.Combine("layout");
        string bundle = dir.Combine("bundle");
        string rootfs = Path.Combine(bundle, "rootfs");
        await Tool(ct, "umoci", "init", "--layout", layout);
        await Tool(ct, "umoci", "new", "--image", layout + ":base");
        async Task Unpack()
        {
            if (Directory.Exists(bundle))
            {
                Directory.Delete(bundle, recursive: true);
            }
            await Tool(ct, "umoci", "unpack", "--rootless", "--image", layout + ":base", bundle);
        }
        await Unpack();
        Directory.CreateDirectory(Path.Combine(rootfs, "etc", "conf.d"));
        await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "hello"), "hello\n", ct);
        await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "conf.d", "a.conf"), "a=1\n", ct);
        await Tool(ct, "umoci", "repack", "--image", layout + ":base", bundle);
        await Unpack();
        Directory.CreateDirectory(Path.Combine(rootfs, "bin"));
        await File.WriteAllBytesAsync(Path.Combine(rootfs, "bin", "tool"), RandomNumberGenerator.GetBytes(300_000), ct);
        await File.WriteAllTextAsync(Path.Combine(rootfs, "bin", new string('n', 180)), "long name\n", ct);
        await Tool(ct, "umoci", "repack", "--image", layout + ":base", bundle);
        await Unpack();
        File.Delete(Path.Combine(rootfs, "etc", "hello"));
        await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "conf.d", "b.conf"), "b=2\n", ct);
        await Tool(ct, "umoci", "repack", "--image", layout + ":base", bundle);
        await Tool(ct, "umoci", "config", "--image", layout + ":base", "--config.cmd", "/bin/tool", "--config.env", "A=1", "--config.workingdir", "/srv");

        await Tool(ct, "umoci", "new", "--image", layout + ":arm");
        await Tool(ct, "umoci", "config", "--image", layout + ":arm", "--architecture", "arm64");

        // Manifest lists by hand: amd64 + arm64, and arm64 alone.
        JsonObject index = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(layout, "index.json"), ct))!.AsObject();
        JsonNode Manifest(string tag) => index["manifests"]!.AsArray().Last(m => m!["annotations"]?["org.opencontainers.image.ref.name"]?.GetValue<string>() == tag)!;
        JsonObject Entry(string tag, string arch) => new()
        {
            ["mediaType"] = OciMediaTypes.ImageManifest,
            ["digest"] = Manifest(tag)["digest"]!.GetValue<string>(),
            ["size"] = Manifest(tag)["size"]!.GetValue<long>(),
            ["platform"] = new JsonObject { ["architecture"] = arch, ["os"] = "linux" },
        };
        foreach (var (tag, entries) in new[] { ("multi", new[] { Entry("arm", "arm64"), Entry("base", "amd64") }), ("armonly", new[] { Entry("arm", "arm64") }) })
        {
            byte[] list = Encoding.UTF8.GetBytes(new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = OciMediaTypes.ImageIndex, ["manifests"] = new JsonArray(entries) }.ToJsonString());
            string digest = OciDigest.Compute(list).ToString();
            await File.WriteAllBytesAsync(Path.Combine(layout, "blobs", "sha256", digest[7..]), list, ct);
            index["manifests"]!.AsArray().Add(new JsonObject
            {
                ["mediaType"] = OciMediaTypes.ImageIndex,
                ["digest"] = digest,
                ["size"] = list.Length,
                ["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = tag },
            });
        }
        await File.WriteAllTextAsync(Path.Combine(layout, "index.json"), index.ToJsonString(), ct);
        return layout;
    }

    private static async Task Tool(CancellationToken ct, string tool, params string[] args) =>
        (await ExternalProcess.RunAsync(tool, args, ct, timeout: TimeSpan.FromSeconds(60))).EnsureSuccess();

    private sealed record Pulled(ResolvedImage Image, List<string> LayerDigests, List<List<string>> LayerEntries);

    /// <summary>Resolves and reads every layer to its end, hashing the uncompressed tar and listing its entries.</summary>
    private static async Task<Pulled> PullAsync(string reference, ImageSourceOptions options, CancellationToken ct)
    {
        await using IImageSource source = await ImageSources.OpenAsync(reference, options, ct);
        ResolvedImage image = await source.ResolveAsync(ct);
        var digests = new List<string>();
        var entries = new List<List<string>>();
        for (int i = 0; i < image.Layers.Count; i++)
        {
            await using Stream layer = await source.OpenLayerAsync(i, ct);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var tee = new MemoryStream();
            await layer.CopyToAsync(tee, ct);
            hash.AppendData(tee.GetBuffer(), 0, (int)tee.Length);
            digests.Add("sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset()));
            tee.Position = 0;
            var names = new List<string>();
            await using (var reader = new TarReader(tee))
            {
                TarEntry? entry;
                while ((entry = await reader.GetNextEntryAsync(cancellationToken: ct)) is not null)
                {
                    names.Add(entry.Name);
                }
            }
            entries.Add(names);
        }
        return new Pulled(image, digests, entries);
    }

    [RequiresFact("umoci", "skopeo", "docker-registry")]
    public async Task One_image_reads_the_same_from_layout_oci_archive_docker_archive_and_registry()
    {
        using var cts = new CancellationTokenSource(Timeout);
        CancellationToken ct = cts.Token;
        using var dir = TempDirectory.Create("vessel-oci-it-");
        string layout = await BuildLayoutAsync(dir, ct);
        string ociArchive = dir.Combine("oci.tar");
        string dockerArchive = dir.Combine("docker.tar");
        await Tool(ct, "skopeo", "copy", $"oci:{layout}:base", $"oci-archive:{ociArchive}:base");
        await Tool(ct, "skopeo", "copy", $"oci:{layout}:base", $"docker-archive:{dockerArchive}:example/app:1");

        Pulled fromLayout = await PullAsync($"{layout}:base", ImageSourceOptions.Default, ct);
        Assert.Equal(3, fromLayout.Image.Layers.Count);
        Assert.Equal(["/bin/tool"], fromLayout.Image.Config.Cmd);
        Assert.Contains("A=1", fromLayout.Image.Config.Env);
        Assert.Equal("/srv", fromLayout.Image.Config.WorkingDir);
        Assert.Equal(fromLayout.Image.Config.DiffIds, fromLayout.LayerDigests); // uncompressed layers are exactly what the config says
        Assert.Contains(fromLayout.LayerEntries[1], n => n.EndsWith(new string('n', 180), StringComparison.Ordinal));
        Assert.Contains(fromLayout.LayerEntries[2], n => n.EndsWith("etc/.wh.hello", StringComparison.Ordinal));

        Pulled fromOciArchive = await PullAsync(ociArchive, ImageSourceOptions.Default, ct);
        Pulled fromDockerArchive = await PullAsync(dockerArchive, ImageSourceOptions.Default, ct);
        Pulled fromDockerByName = await PullAsync($"docker-archive:{dockerArchive}:example/app:1", ImageSourceOptions.Default, ct);
        Assert.Equal(fromLayout.Image.ManifestDigest, fromOciArchive.Image.ManifestDigest);
        foreach (Pulled other in new[] { fromOciArchive, fromDockerArchive, fromDockerByName })
        {
            Assert.Equal(fromLayout.LayerDigests, other.LayerDigests);
            Assert.Equal(fromLayout.LayerEntries, other.LayerEntries);
            Assert.Equal(fromLayout.Image.Config.Cmd, other.Image.Config.Cmd);
        }

        await WithRegistryAsync(async registry =>
        {
            await Tool(ct, "skopeo", "copy", "--dest-tls-verify=false", $"oci:{layout}:base", $"docker://{registry.Host}/test/app:v1");
            var insecure = new ImageSourceOptions { Insecure = true };
            Pulled byTag = await PullAsync($"{registry.Host}/test/app:v1", insecure, ct);
            Assert.Equal(fromLayout.Image.ManifestDigest, byTag.Image.ManifestDigest);
            Assert.Equal(fromLayout.LayerDigests, byTag.LayerDigests);
            Pulled byDigest = await PullAsync($"docker://{registry.Host}/test/app@{byTag.Image.ManifestDigest}", insecure, ct);
            Assert.Equal(fromLayout.LayerDigests, byDigest.LayerDigests);

            var missing = await Assert.ThrowsAsync<VesselException>(() => PullAsync($"{registry.Host}/test/app:nope", insecure, ct));
            Assert.Equal(VesselErrorReason.NotFound, missing.Reason);
            var tls = await Assert.ThrowsAsync<VesselException>(() => PullAsync($"{registry.Host}/test/app:v1", ImageSourceOptions.Default, ct));
            Assert.Contains("--insecure", tls.Message, StringComparison.Ordinal);
        }, ct);
    }

    [RequiresFact("umoci", "skopeo", "docker-registry")]
    public Task Registry_manifest_lists_pick_amd64_and_a_tampered_blob_fails_its_digest() => WithLayoutAndRegistryAsync(async (layout, registry, ct) =>
    {
        var insecure = new ImageSourceOptions { Insecure = true };
        await Tool(ct, "skopeo", "copy", "--all", "--dest-tls-verify=false", $"oci:{layout}:multi", $"docker://{registry.Host}/test/multi:1");
        await Tool(ct, "skopeo", "copy", "--all", "--dest-tls-verify=false", $"oci:{layout}:armonly", $"docker://{registry.Host}/test/armonly:1");

        Pulled multi = await PullAsync($"{registry.Host}/test/multi:1", insecure, ct);
        Pulled local = await PullAsync($"{layout}:base", ImageSourceOptions.Default, ct);
        Assert.Equal(local.Image.ManifestDigest, multi.Image.ManifestDigest); // the amd64 entry, not the list
        Assert.Equal(local.LayerDigests, multi.LayerDigests);

        // Cancellation: before resolving, and in the middle of a layer's HTTP body.
        await using (IImageSource source = await ImageSources.OpenAsync($"{registry.Host}/test/multi:1", insecure, ct))
        {
            using var cancelled = new CancellationTokenSource();
            await cancelled.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => source.ResolveAsync(cancelled.Token));
            await source.ResolveAsync(ct);
            using var midway = new CancellationTokenSource();
            await using Stream layer = await source.OpenLayerAsync(1, midway.Token);
            byte[] buffer = new byte[4096];
            Assert.True(await layer.ReadAsync(buffer, midway.Token) > 0);
            await midway.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => _ = await layer.ReadAsync(buffer, midway.Token));
        }

        var arm = await Assert.ThrowsAsync<VesselException>(() => PullAsync($"{registry.Host}/test/armonly:1", insecure, ct));
        Assert.Equal(VesselErrorReason.Unsupported, arm.Reason);
        Assert.Contains("platforms present: linux/arm64", arm.Message, StringComparison.Ordinal);

        // Overwrite the second layer's stored blob with other bytes of the same length.
        string victim = local.Image.Layers[1].Digest;
        string data = registry.BlobDataPath(victim);
        byte[] original = await File.ReadAllBytesAsync(data, ct);
        byte[] tampered = (byte[])original.Clone();
        tampered[^100] ^= 0xff;
        await File.WriteAllBytesAsync(data, tampered, ct);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => PullAsync($"{registry.Host}/test/multi:1", insecure, ct));
        Assert.Contains("layer 2 of 3", e.Message, StringComparison.Ordinal);
        Assert.Contains(victim, e.Message, StringComparison.Ordinal);
        Assert.Contains(OciDigest.Compute(tampered).ToString(), e.Message, StringComparison.Ordinal);
    });

    [RequiresFact("umoci", "skopeo", "docker-registry")]
    public Task Token_auth_challenge_is_answered_with_credentials_and_refused_without() => WithLayoutAndRegistryAsync(async (layout, registry, ct) =>
    {
        await Tool(ct, "skopeo", "copy", "--dest-tls-verify=false", $"oci:{layout}:base", $"docker://{registry.Host}/private/app:v1");
        await using var proxy = new TokenAuthProxy(registry.Host);

        var anonymous = await Assert.ThrowsAsync<VesselException>(() =>
            PullAsync($"{proxy.Host}/private/app:v1", new ImageSourceOptions { Insecure = true }, ct));
        Assert.Contains("refused anonymous access", anonymous.Message, StringComparison.Ordinal);

        var wrong = await Assert.ThrowsAsync<VesselException>(() => PullAsync($"{proxy.Host}/private/app:v1",
            new ImageSourceOptions { Insecure = true, Credentials = new RegistryCredentials(TokenAuthProxy.Username, "wrong") }, ct));
        Assert.Contains("refused the given credentials", wrong.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong", wrong.Message.Replace("refused the given", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal);

        Pulled pulled = await PullAsync($"{proxy.Host}/private/app:v1",
            new ImageSourceOptions { Insecure = true, Credentials = new RegistryCredentials(TokenAuthProxy.Username, TokenAuthProxy.Password) }, ct);
        Assert.Equal(3, pulled.LayerDigests.Count);
        Assert.Equal(pulled.Image.Config.DiffIds, pulled.LayerDigests);
        Assert.Equal(1, proxy.TokensIssued); // one token served the manifest, the config and every blob
    });

    /// <summary>
    /// The test image's OCI layout in a temp directory and a fresh local registry for
    /// <paramref name="body"/>, under the test's deadline; then the registry's process and directory must be gone.
    /// </summary>
    private static async Task WithLayoutAndRegistryAsync(Func<string, LocalRegistry, CancellationToken, Task> body)
    {
        using var cts = new CancellationTokenSource(Timeout);
        using var dir = TempDirectory.Create("vessel-oci-it-");
        string layout = await BuildLayoutAsync(dir, cts.Token);
        await WithRegistryAsync(registry => body(layout, registry, cts.Token), cts.Token);
    }

    /// <summary>Runs <paramref name="body"/> against a fresh local registry, then asserts that its process and directory are gone.</summary>
    private static async Task WithRegistryAsync(Func<LocalRegistry, Task> body, CancellationToken ct)
    {
        int pid;
        string directory;
        await using (LocalRegistry registry = await LocalRegistry.StartAsync(ct))
        {
            pid = registry.ProcessId;
            directory = registry.DirectoryPath;
            await body(registry);
        }
        AssertGone(pid, directory);
    }

    private static void AssertGone(int pid, string dir)
    {
        bool alive;
        try
        {
            using var p = Process.GetProcessById(pid);
            alive = !p.HasExited;
        }
        catch (ArgumentException)
        {
            alive = false;
        }
        Assert.False(alive, $"docker-registry (pid {pid}) still runs");
        Assert.False(Directory.Exists(dir), $"{dir} was not deleted");
    }
}
