using System.Text.RegularExpressions;
using Vessel.IntegrationTests.Blocks;
using Vessel.IntegrationTests.Sandboxes;

namespace Vessel.IntegrationTests.Templates;

/// <summary>
/// Templates through a bucket (a real s3rver on loopback): a template built and snapshotted in
/// one home is pushed, pulled into an empty home and resumed there from its snapshot; what a
/// bucket holds already is not sent again; a damaged blob or a hostile manifest is refused
/// with nothing written.
/// </summary>
[Collection(SandboxCollection.Name)]
public sealed class TemplateTransferTests(SandboxEnvironment env) : S3TestBase("vessel-tpl-s3-")
{
    [RequiresFact("npm", "node", "qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "root", Timeout = 900_000)]
    public async Task A_pushed_template_is_pulled_into_an_empty_home_and_resumes_there_from_its_snapshot()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        CancellationToken ct = cts.Token;
        string bucket = $"s3://{Server.Bucket}/templates-test";
        var remote = new Dictionary<string, string>(Server.Environment);
        (string homeA, string pushed) = await BuildAndPushAsync("tpl-push-a", "moved", bucket, remote, ct);
        string homeB = Path.Combine(env.StateDirectory, "tpl-push-b");
        Task<ProcessResult> Run(IReadOnlyDictionary<string, string> environment, string[] args) => RunVesselAsync(environment, args, ct);
        Task<string> Vessel(params string[] args) => VesselAsync(remote, args, ct);

        Assert.Contains("pushed 'moved'", pushed, StringComparison.Ordinal);
        Assert.DoesNotContain(" 0 builds", pushed, StringComparison.Ordinal);
        // A second push finds everything there: no build copied, no snapshot byte sent.
        string again = await Vessel("template", "push", "moved", "--to", bucket, "--home", homeA);
        Assert.Contains(": 0 builds (0 B)", again, StringComparison.Ordinal);
        Assert.Contains("0 B sent", again, StringComparison.Ordinal);

        // An empty home: pull, then resume from the pulled snapshot.
        string pulled = await Vessel("template", "pull", "moved", "--from", bucket, "--home", homeB);
        Assert.Contains("pulled 'moved'", pulled, StringComparison.Ordinal);
        string run = await Vessel("template", "run", "moved", "--home", homeB, "--timings", "--", "sh", "-c", "cat /made.txt; pidof sleep >/dev/null && echo start-running");
        Assert.Contains("made-on-a\nstart-running\n", run, StringComparison.Ordinal);
        Assert.Contains("restored from snapshot", run, StringComparison.Ordinal);

        // The same records in both homes; a second pull fetches nothing.
        TemplateRecord a = (await (await StateStore.OpenAsync(Path.Combine(homeA, "state.db"), ct)).GetTemplateAsync("moved", ct))!;
        TemplateRecord b = (await (await StateStore.OpenAsync(Path.Combine(homeB, "state.db"), ct)).GetTemplateAsync("moved", ct))!;
        Assert.Equal((a.FinalHash, a.LayerBuildId, a.ConfigJson), (b.FinalHash, b.LayerBuildId, b.ConfigJson));
        Assert.Equal(Path.GetFileName(a.SnapshotDirectory), Path.GetFileName(b.SnapshotDirectory));
        Assert.StartsWith(Path.Combine(homeB, "snapshots"), b.SnapshotDirectory, StringComparison.Ordinal);
        string second = await Vessel("template", "pull", "moved", "--from", bucket, "--home", homeB);
        Assert.Contains(": 0 builds (0 B)", second, StringComparison.Ordinal);
        Assert.Contains("0 B fetched", second, StringComparison.Ordinal);
        Assert.DoesNotContain(Directory.GetFileSystemEntries(Path.Combine(homeB, "snapshots")), d => d.Contains(".pull-", StringComparison.Ordinal));

        // A lazy pull leaves the layers in the bucket: a sandbox reads them through it as it starts.
        string homeC = Path.Combine(env.StateDirectory, "tpl-push-c");
        ProcessResult refused = await Run(remote, ["template", "pull", "moved", "--from", bucket, "--lazy", "--home", homeC]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains($"set VESSEL_REMOTE_STORE={bucket}", refused.StandardError, StringComparison.Ordinal);
        remote["VESSEL_REMOTE_STORE"] = bucket;
        string lazy = await Vessel("template", "pull", "moved", "--from", bucket, "--lazy", "--home", homeC);
        Assert.Contains(": 0 builds (0 B)", lazy, StringComparison.Ordinal);
        string lazyRun = await Vessel("template", "run", "moved", "--home", homeC, "--timings", "--", "sh", "-c", "cat /made.txt; pidof sleep >/dev/null && echo start-running");
        Assert.Contains("made-on-a\nstart-running\n", lazyRun, StringComparison.Ordinal);
        Assert.Contains("restored from snapshot", lazyRun, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(homeC, "blocks")) && Directory.EnumerateFiles(Path.Combine(homeC, "blocks"), "*", SearchOption.AllDirectories).Any(f => !f.Contains("staging", StringComparison.Ordinal)),
            "a lazy pull and a sandbox on it wrote no build into the home");
        Assert.True(Directory.EnumerateFiles(Path.Combine(homeC, "cache", "chunks"), "*", SearchOption.AllDirectories).Any(), "the sandbox read chunks through the cache");
        // Without the bucket behind the home, the template's layer is not there: a clear error.
        remote.Remove("VESSEL_REMOTE_STORE");
        ProcessResult missing = await Run(remote, ["template", "run", "moved", "--home", homeC, "--", "true"]);
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("is not in the store", missing.StandardError, StringComparison.Ordinal);
        env.AssertNothingLeft();
    }

    [RequiresFact("npm", "node", "qemu-system-x86_64", "busybox-image", "tune2fs", "apt-get", "dpkg-deb", "modinfo", "nbdfuse", "fusermount3", "root", Timeout = 900_000)]
    public async Task A_lazily_pulled_template_maps_its_memory_from_the_bucket_fetching_part_of_it_and_a_damaged_chunk_fails_the_start_naming_it()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        CancellationToken ct = cts.Token;
        string bucket = $"s3://{Server.Bucket}/lazymem-test";
        var remote = new Dictionary<string, string>(Server.Environment) { ["VESSEL_REMOTE_STORE"] = bucket };
        (string homeA, _) = await BuildAndPushAsync("tpl-mem-a", "lazymem", bucket, remote, ct);
        string homeC = Path.Combine(env.StateDirectory, "tpl-mem-c");
        Task<string> Vessel(params string[] args) => VesselAsync(remote, args, ct);

        string memoryFile = Path.Combine(Directory.GetDirectories(Path.Combine(homeA, "snapshots")).Single(), SandboxSnapshot.MemoryFile);
        long stored = NonZeroChunkBytes(memoryFile, TemplateTransfer.MemoryChunkSize); // what a whole pull fetches of it

        // The lazy pull writes a reference, not the memory; the restore maps it from the bucket.
        string pulled = await Vessel("template", "pull", "lazymem", "--from", bucket, "--lazy", "--home", homeC);
        Assert.Contains("pulled 'lazymem'", pulled, StringComparison.Ordinal);
        string snapshot = Directory.GetDirectories(Path.Combine(homeC, "snapshots")).Single();
        Assert.False(File.Exists(Path.Combine(snapshot, SandboxSnapshot.MemoryFile)), "the memory stays in the bucket");
        S3BlobStore.BlobRef blob = (await RemoteMemory.TryReadReferenceAsync(snapshot, ct))!;
        Assert.Equal(new FileInfo(memoryFile).Length, blob.Length);
        string run = await Vessel("template", "run", "lazymem", "--home", homeC, "--timings", "--", "sh", "-c", "cat /made.txt; pidof sleep >/dev/null && echo start-running");
        Assert.Contains("made-on-a\nstart-running\n", run, StringComparison.Ordinal);
        Assert.Contains("restored from snapshot", run, StringComparison.Ordinal);
        Match fetched = Regex.Match(run, @"fetched from \S+: (\d+) bytes \(memory (\d+), layers (\d+)\)");
        Assert.True(fetched.Success, run);
        long memory = long.Parse(fetched.Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.InRange(memory, 1, stored - 1);
        AssertNothingLeft(homeC);

        // Damage every memory chunk that run fetched, in the bucket, and empty the node's cache: the next start fails naming the object.
        string chunks = Path.Combine(homeC, "cache", "chunks", new Guid(Convert.FromHexString(blob.Sha256[..32]), bigEndian: true).ToString("D"));
        string[] indexes = [.. Directory.GetFiles(chunks).Select(Path.GetFileName).OfType<string>()];
        Assert.NotEmpty(indexes);
        using (var storage = new S3LayerStorage(Server.Options("lazymem-test", Dir.Combine("cache-mem"))))
        {
            foreach (string index in indexes)
            {
                await storage.PutAsync(storage.KeyOf($"blobs/{blob.Sha256}/data/{index}"), RandomNumberGenerator.GetBytes(TemplateTransfer.MemoryChunkSize), ct);
            }
        }
        Directory.Delete(Path.Combine(homeC, "cache", "chunks"), recursive: true);
        ProcessResult damaged = await RunVesselAsync(remote, ["template", "run", "lazymem", "--home", homeC, "--", "true"], ct);
        Assert.NotEqual(0, damaged.ExitCode);
        Assert.Contains("reading its memory from the bucket failed", damaged.StandardError, StringComparison.Ordinal);
        Assert.Matches($@"chunk \d+ of blob {blob.Sha256} \(lazymem-test/blobs/{blob.Sha256}/data/[0-9a-f]{{8}}, \d+ bytes\) does not match its SHA-256", damaged.StandardError);
        AssertNothingLeft(homeC);
        env.AssertNothingLeft();
    }

    /// <summary>
    /// Builds the template of <see cref="WriteSpec"/> in a new home <paramref name="homeName"/> of
    /// the environment and pushes it to <paramref name="bucket"/>: that home and the push's output.
    /// </summary>
    private async Task<(string Home, string Pushed)> BuildAndPushAsync(string homeName, string name, string bucket, IReadOnlyDictionary<string, string> environment, CancellationToken ct)
    {
        string home = Path.Combine(env.StateDirectory, homeName);
        await VesselAsync(environment, ["template", "build", "-f", WriteSpec(home, name), "--home", home], ct);
        return (home, await VesselAsync(environment, ["template", "push", name, "--to", bucket, "--home", home], ct));
    }

    /// <summary>A busybox template <paramref name="name"/> (a RUN step writes /made.txt, a start command) specified in <paramref name="home"/>.</summary>
    private static string WriteSpec(string home, string name)
    {
        Directory.CreateDirectory(home);
        return TestImages.WriteTemplateSpec(Path.Combine(home, "spec.json"), name,
            """ "steps": [ { "run": "echo made-on-a > /made.txt" } ], "start": "sleep 100000", "ready": "pidof sleep" """, TestImages.BusyboxOciReference);
    }

    private static Task<ProcessResult> RunVesselAsync(IReadOnlyDictionary<string, string> environment, string[] args, CancellationToken ct)
        => ExternalProcess.RunAsync("dotnet", [VesselCli.DllPath, .. args], ct, environment: environment, timeout: TimeSpan.FromMinutes(10));

    /// <summary>Runs the CLI and asserts that it succeeded; its output (stdout then stderr).</summary>
    private static async Task<string> VesselAsync(IReadOnlyDictionary<string, string> environment, string[] args, CancellationToken ct)
    {
        ProcessResult r = await RunVesselAsync(environment, args, ct);
        Assert.True(r.ExitCode == 0, $"vessel {string.Join(' ', args)} failed ({r.ExitCode}): {r.StandardError}");
        return r.StandardOutput + r.StandardError;
    }

    /// <summary>No QEMU, nbdfuse, mount or sandbox directory of <paramref name="home"/> is left.</summary>
    private static void AssertNothingLeft(string home)
    {
        SandboxEnvironment.AssertNothingLeft(home);
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(home, StringComparison.Ordinal));
        Assert.Empty(ProcessTable.Matching(c => c.Contains("nbdfuse", StringComparison.Ordinal) && c.Contains(home, StringComparison.Ordinal)));
    }

    /// <summary>The bytes of <paramref name="path"/>'s chunks that are not all zeros: what the bucket stores of it.</summary>
    private static long NonZeroChunkBytes(string path, int chunkSize)
    {
        using FileStream file = File.OpenRead(path);
        byte[] buffer = new byte[chunkSize];
        long total = 0;
        int n;
        while ((n = file.ReadAtLeast(buffer, chunkSize, throwOnEndOfStream: false)) > 0)
        {
            total += buffer.AsSpan(0, n).IndexOfAnyExcept((byte)0) >= 0 ? n : 0;
        }
        return total;
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task A_blob_round_trips_with_holes_and_a_damaged_chunk_is_refused_leaving_no_file()
    {
        CancellationToken ct = CancellationToken.None;
        using var storage = new S3LayerStorage(Server.Options("blobs", Dir.Combine("cache"), Chunk));
        var blobs = new S3BlobStore(storage);
        // Ten chunks: random, zeros, random...; the zero ones are not sent.
        byte[] bytes = new byte[(10 * Chunk) + 123];
        for (int i = 0; i < 11; i += 2)
        {
            RandomNumberGenerator.Fill(bytes.AsSpan(i * Chunk, Math.Min(Chunk, bytes.Length - (i * Chunk))));
        }
        string source = Dir.Combine("blob.bin");
        await File.WriteAllBytesAsync(source, bytes, ct);
        S3BlobStore.Transfer put = await blobs.PutFileAsync(source, ct);
        Assert.Equal((5 * Chunk) + 123, put.Bytes);
        Assert.True((await blobs.PutFileAsync(source, ct)).Skipped);

        string copy = Dir.Combine("copy.bin");
        S3BlobStore.Transfer got = await blobs.GetFileAsync(put.Blob, copy, "test blob", ct);
        Assert.Equal(put.Bytes, got.Bytes);
        Assert.True((await File.ReadAllBytesAsync(copy, ct)).AsSpan().SequenceEqual(bytes));

        await storage.PutAsync(storage.KeyOf($"blobs/{put.Blob.Sha256}/{S3LayerStorage.ChunkName(4)}"), RandomNumberGenerator.GetBytes(Chunk), ct);
        string damaged = Dir.Combine("damaged.bin");
        var e = await Assert.ThrowsAsync<VesselException>(() => blobs.GetFileAsync(put.Blob, damaged, "test blob", ct));
        Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
        Assert.Contains("chunk 4", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(damaged));
        Assert.False(File.Exists(damaged + ".part"));
    }

    [RequiresFact("npm", "node", Timeout = 180_000)]
    public async Task A_hostile_manifest_is_refused_naming_the_problem_and_nothing_is_written()
    {
        CancellationToken ct = CancellationToken.None;
        using var storage = new S3LayerStorage(Server.Options("hostile", Dir.Combine("cache-h"), Chunk));
        var home = new VesselHome(Dir.Combine("home"));
        Directory.CreateDirectory(home.Root);
        StateStore state = await StateStore.OpenAsync(home.StateDatabase, ct);
        var transfer = new TemplateTransfer(state, LayerStore.OpenDirectory(home.Blocks), home);
        string blob = new('a', 64);
        string Manifest(string name, string directory, string files) => $$$"""
            {"version":1,"template":{"name":"{{{name}}}","specJson":"{}","finalHash":"h","layerBuildId":"{{{Guid.NewGuid()}}}","diskSizeBytes":4096,
             "configJson":"{}","builtAt":"2026-12-06T00:00:00Z"},"snapshot":{"directory":"{{{directory}}}","files":
            """ + "{" + files + "}}}";
        string goodFiles = $$"""
            "snapshot.json":{"sha256":"{{blob}}","length":1},"state":{"sha256":"{{blob}}","length":1}
            """;
        (string Name, string Json, string Expect)[] cases =
        [
            ("escape", Manifest("escape", "../../etc", goodFiles), "is not a snapshot name"),
            ("other", Manifest("someone-else", "s1", goodFiles), "names template 'someone-else'"),
            ("files", Manifest("files", "s1", goodFiles + $$""","../../x":{"sha256":"{{blob}}","length":1}"""), "lists files other than"),
            ("garbage", "{not json", "not valid JSON"),
        ];
        foreach ((string name, string json, string expect) in cases)
        {
            await storage.PutAsync(storage.KeyOf(TemplateTransfer.ManifestKey(name)), Encoding.UTF8.GetBytes(json), ct);
            var e = await Assert.ThrowsAsync<VesselException>(() => transfer.PullAsync(name, storage, lazy: false, ct));
            Assert.Equal(VesselErrorReason.Corrupt, e.Reason);
            Assert.Contains(expect, e.Message, StringComparison.Ordinal);
        }
        var bad = await Assert.ThrowsAsync<VesselException>(() => transfer.PullAsync("../x", storage, lazy: false, ct));
        Assert.Equal(VesselErrorReason.InvalidInput, bad.Reason);
        Assert.Empty(await state.ListTemplatesAsync(ct));
        Assert.False(Directory.Exists(home.Snapshots) && Directory.EnumerateFileSystemEntries(home.Snapshots).Any());
        Assert.False(Directory.Exists(Path.Combine(Dir.Path, "etc")));
    }
}
