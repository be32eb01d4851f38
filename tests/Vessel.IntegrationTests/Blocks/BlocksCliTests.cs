namespace Vessel.IntegrationTests.Blocks;

/// <summary>The <c>vessel blocks</c> and <c>vessel nbd serve</c> commands as a user runs them.</summary>
public sealed class BlocksCliTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-blocks-it-");

    public void Dispose() => _dir.Dispose();

    private string Store => _dir.Combine("store");

    private async Task<string> Vessel(CancellationToken ct, params string[] args)
    {
        ProcessResult r = await VesselCli.RunAsync(ct, args);
        Assert.True(r.ExitCode == 0, $"vessel {string.Join(' ', args)} failed: {r.StandardError}");
        return r.StandardOutput.Trim();
    }

    /// <summary>Imports a sparse file of <paramref name="size"/> zero bytes with `vessel blocks import`; returns the build id.</summary>
    private async Task<string> ImportZerosAsync(string name, long size, CancellationToken ct)
    {
        string zeros = _dir.Combine(name);
        using (var f = File.Create(zeros))
        {
            f.SetLength(size);
        }
        return await Vessel(ct, "blocks", "import", zeros, "--store", Store);
    }

    [RequiresFact("mke2fs", "e2fsck", Timeout = 240_000)]
    public async Task Import_export_and_flatten_round_trip_an_ext4_image()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        string image = await DiskImages.MakeExt4Async(_dir.Path, "img", 32, ct);
        string baseId = await Vessel(ct, "blocks", "import", image, "--store", Store);
        Assert.True(Guid.TryParse(baseId, out _), baseId);

        string flat = _dir.Combine("flat.raw");
        await Vessel(ct, "blocks", "flatten", baseId[..8], flat, "--store", Store);
        Assert.True(File.ReadAllBytes(image).AsSpan().SequenceEqual(File.ReadAllBytes(flat)));
        (await ExternalProcess.RunAsync("e2fsck", ["-fn", flat], ct)).EnsureSuccess();

        // Change 5 blocks of the flat copy and store the difference as a layer.
        using (var f = new FileStream(flat, FileMode.Open))
        {
            byte[] block = new byte[4096];
            new Random(3).NextBytes(block);
            foreach (long b in new long[] { 100, 101, 2000, 5000, 8000 })
            {
                f.Position = b * 4096;
                f.Write(block);
            }
        }
        string childId = await Vessel(ct, "blocks", "export", baseId, flat, "--store", Store);
        BuildHeader child = await LayerStore.OpenDirectory(Store).ReadHeaderAsync(Guid.Parse(childId), ct);
        Assert.Equal(1ul, child.Generation);
        Assert.Equal(5 * 4096, child.DataLength);

        string again = _dir.Combine("again.raw");
        await Vessel(ct, "blocks", "flatten", childId, again, "--store", Store);
        Assert.True(File.ReadAllBytes(flat).AsSpan().SequenceEqual(File.ReadAllBytes(again)));
        string list = await Vessel(ct, "blocks", "list", "--store", Store);
        Assert.Contains(baseId, list, StringComparison.Ordinal);
        Assert.Contains(childId, list, StringComparison.Ordinal);
        await Vessel(ct, "blocks", "verify", childId, "--store", Store);
    }

    [Fact(Timeout = 60_000)]
    public async Task Import_of_a_missing_file_fails_with_a_clear_message()
    {
        ProcessResult r = await VesselCli.RunAsync(CancellationToken.None, "blocks", "import", _dir.Combine("nope.raw"), "--store", Store);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("does not exist", r.StandardError, StringComparison.Ordinal);
    }

    [RequiresFact("nbdinfo", Timeout = 240_000)]
    public async Task Killing_an_export_midway_leaves_only_complete_builds()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        // A base of zeros, and an image whose every block differs: the export copies 192 MiB.
        string baseId = await ImportZerosAsync("zeros.raw", 192L << 20, ct);
        string changed = _dir.Combine("changed.raw");
        using (var f = File.Create(changed))
        {
            byte[] chunk = new byte[1 << 20];
            var rng = new Random(5);
            for (int i = 0; i < 192; i++)
            {
                rng.NextBytes(chunk);
                f.Write(chunk);
            }
        }

        string staging = Path.Combine(Store, "staging");
        string killedAt = "";
        for (int attempt = 0; attempt < 2; attempt++)
        {
            using var child = Process.Start(new ProcessStartInfo("dotnet")
            {
                ArgumentList = { VesselCli.DllPath, "blocks", "export", baseId, changed, "--store", Store },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            try
            {
                // Kill during the comparison (attempt 0: the overlay cache exists) or while the new
                // build's data is being written (attempt 1: its staging directory exists). Tight
                // polling on a plain thread: the copy phase lasts a fraction of a second.
                var sw = Stopwatch.StartNew();
                Func<bool> reached = attempt == 0
                    ? () => Directory.EnumerateFiles(staging, "*.cache").Any()
                    : () => Directory.EnumerateDirectories(staging).Any();
                while (!child.HasExited && sw.Elapsed < TimeSpan.FromSeconds(60) && !reached())
                {
                    Thread.Sleep(1);
                }
                child.Kill(entireProcessTree: true);
                killedAt = $"{sw.ElapsedMilliseconds} ms";
                await child.WaitForExitAsync(ct);
                if (child.ExitCode == 0)
                {
                    Assert.Fail($"attempt {attempt}: the export finished before it could be killed: {await child.StandardError.ReadToEndAsync(ct)}");
                }
            }
            finally
            {
                if (!child.HasExited)
                {
                    child.Kill(entireProcessTree: true);
                }
            }

            // The store loads cleanly: only the base, which verifies; the leftover staging goes away.
            var store = LayerStore.OpenDirectory(Store);
            IReadOnlyList<BuildHeader> builds = await store.ListAsync(ct);
            Assert.True(builds.Count == 1, $"attempt {attempt}: {builds.Count} builds after the kill at {killedAt}; child said: {await child.StandardError.ReadToEndAsync(ct)}");
            Assert.Equal(baseId, builds[0].BuildId.ToString());
            await store.VerifyAsync(Guid.Parse(baseId), ct);
            Assert.Empty(Directory.EnumerateFileSystemEntries(staging));
        }

        // And a complete export afterwards works.
        string childId = await Vessel(ct, "blocks", "export", baseId, changed, "--store", Store);
        Assert.Equal(2, (await LayerStore.OpenDirectory(Store).ListAsync(ct)).Count);
        await Vessel(ct, "blocks", "verify", childId, "--store", Store);
    }

    [RequiresFact("nbdinfo", "qemu-io", Timeout = 240_000)]
    public async Task Nbd_serve_with_an_overlay_stores_writes_as_a_new_build_on_SIGTERM()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        CancellationToken ct = cts.Token;
        string baseId = await ImportZerosAsync("disk.raw", 16L << 20, ct);
        string socket = _dir.Combine("serve.sock");
        using var server = Process.Start(new ProcessStartInfo("dotnet")
        {
            ArgumentList = { VesselCli.DllPath, "nbd", "serve", baseId, "--overlay", "--socket", socket, "--store", Store },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        try
        {
            string first = (await server.StandardOutput.ReadLineAsync(ct))!;
            Assert.Contains("nbd+unix:///?socket=", first, StringComparison.Ordinal);
            (await ExternalProcess.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x77 4096 8192", $"nbd+unix:///?socket={socket}"], ct)).EnsureSuccess();
            (await ExternalProcess.RunAsync("kill", ["-TERM", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], ct)).EnsureSuccess();
            string newId = (await server.StandardOutput.ReadToEndAsync(ct)).Trim();
            await server.WaitForExitAsync(ct);
            Assert.Equal(0, server.ExitCode);
            Assert.False(File.Exists(socket));
            BuildHeader h = await LayerStore.OpenDirectory(Store).ReadHeaderAsync(Guid.Parse(newId), ct);
            Assert.Equal(8192, h.DataLength);
            Assert.Empty(Directory.EnumerateFiles(Path.Combine(Store, "staging"), "*.cache"));
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill(entireProcessTree: true);
            }
        }
    }
}
