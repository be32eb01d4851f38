using Vessel.IntegrationTests.Blocks;
using Vessel.Nbd;

namespace Vessel.IntegrationTests.Nbd;

/// <summary>Vessel's NBD server against real clients: qemu-img, qemu-io, nbdinfo, nbdcopy.</summary>
public sealed class NbdRealClientTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-nbd-it-");

    public void Dispose() => _dir.Dispose();

    private static string Uri(string socket, string export = "") => $"nbd+unix:///{export}?socket={socket}";

    private static async Task<ProcessResult> Run(string tool, CancellationToken ct, params string[] args)
        => (await ExternalProcess.RunAsync(tool, args, ct, timeout: TimeSpan.FromMinutes(2))).EnsureSuccess();

    [RequiresFact("mke2fs", "e2fsck", "qemu-img", "nbdinfo", "nbdcopy", Timeout = 240_000)]
    public async Task Real_clients_read_a_build_exactly_and_see_its_holes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        string image = await DiskImages.MakeExt4Async(_dir.Path, "base", 64, ct);
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));
        BuildHeader header = await store.ImportAsync(image, cancellationToken: ct);
        Assert.True(header.DataLength < header.Size / 2, "an ext4 image of small files is mostly zeros, which are not stored");

        string socket = _dir.Combine("ro.sock");
        using (Build build = await store.OpenAsync(header.BuildId, ct))
        {
            await using (var server = new NbdServer(new NbdServerOptions { UnixSocketPath = socket, TcpEndPoint = new IPEndPoint(IPAddress.Loopback, 0) }))
            {
                server.AddExport("", build);
                await server.StartAsync(ct);

                await Run("qemu-img", ct, "compare", "-f", "raw", "-F", "raw", image, Uri(socket));
                string converted = _dir.Combine("converted.raw");
                await Run("qemu-img", ct, "convert", "-f", "raw", "-O", "raw", Uri(socket), converted);
                Assert.True(File.ReadAllBytes(image).AsSpan().SequenceEqual(File.ReadAllBytes(converted)));
                await Run("e2fsck", ct, "-fn", converted);

                string copied = _dir.Combine("copied.raw");
                await Run("nbdcopy", ct, $"nbd://127.0.0.1:{server.TcpEndPoint!.Port}/", copied);
                Assert.True(File.ReadAllBytes(image).AsSpan().SequenceEqual(File.ReadAllBytes(copied)));

                // nbdinfo --map lists the mapping's zero extents as holes, and data where data is stored.
                string map = (await Run("nbdinfo", ct, "--map", Uri(socket))).StandardOutput;
                long holeBytes = 0;
                foreach (string line in map.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (f[3].Contains("hole", StringComparison.Ordinal))
                    {
                        holeBytes += long.Parse(f[1], System.Globalization.CultureInfo.InvariantCulture);
                    }
                }
                Assert.Equal(header.Mapping.Where(e => e.IsZero).Sum(e => e.Length), holeBytes);

                var canWrite = await ExternalProcess.RunAsync("nbdinfo", ["--can", "write", Uri(socket)], ct);
                Assert.Equal(2, canWrite.ExitCode); // 2 = false
                await Run("nbdinfo", ct, "--can", "multi-conn", Uri(socket));
            }
            Assert.False(File.Exists(socket), "the server removes its socket file");
        }
    }

    [RequiresFact("mke2fs", "qemu-img", "qemu-io", "nbdinfo", Timeout = 240_000)]
    public async Task Writes_through_qemu_io_survive_export_and_a_fresh_server()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        string image = await DiskImages.MakeExt4Async(_dir.Path, "base", 32, ct);
        string expected = _dir.Combine("expected.raw");
        File.Copy(image, expected);
        string storeDir = _dir.Combine("store");
        LayerStore store = LayerStore.OpenDirectory(storeDir);
        BuildHeader baseHeader = await store.ImportAsync(image, cancellationToken: ct);

        // Unaligned writes, zeroes and discards: the same commands go to the export and to a plain copy.
        string[] ops =
        [
            "-c", "write -P 0x5a 1000 70000",
            "-c", "write -P 0xc3 20971520 1048576",
            "-c", "write -z 4096 8192",
            "-c", "discard 20971520 65536",
            "-c", "write -P 0x11 33550000 4432",
        ];
        string socket = _dir.Combine("rw.sock");
        string work = _dir.Combine("work");
        BuildHeader exported;
        using (Build build = await store.OpenAsync(baseHeader.BuildId, ct))
        using (OverlayDevice overlay = OverlayDevice.Create(build, work))
        {
            await using (var server = new NbdServer(new NbdServerOptions { UnixSocketPath = socket }))
            {
                server.AddExport("disk", overlay);
                await server.StartAsync(ct);
                await Run("nbdinfo", ct, "--can", "trim", Uri(socket, "disk"));
                await Run("qemu-io", ct, ["-f", "raw", .. ops, Uri(socket, "disk")]);
                await Run("qemu-io", ct, ["-f", "raw", .. ops, expected]);
                await Run("qemu-img", ct, "compare", "-f", "raw", "-F", "raw", expected, Uri(socket, "disk"));
            }
            exported = await overlay.ExportAsync(store, null, ct);
        }
        Assert.Empty(Directory.GetFiles(work)); // the overlay's cache file is gone
        Assert.Equal(1ul, exported.Generation);
        // 70000 bytes at 1000 touch 18 blocks; 1 MiB is 256; the last write 2 blocks (the 8 KiB zeroes fall inside the first write's range).
        Assert.True(exported.DataLength <= (18 + 256 + 2) * 4096L, $"export stored {exported.DataLength} bytes");

        // A fresh store and server read the new build.
        LayerStore fresh = LayerStore.OpenDirectory(storeDir);
        string socket2 = _dir.Combine("fresh.sock");
        using (Build reopened = await fresh.OpenAsync(exported.BuildId, ct))
        {
            await using var server = new NbdServer(new NbdServerOptions { UnixSocketPath = socket2 });
            server.AddExport("", reopened);
            await server.StartAsync(ct);
            await Run("qemu-img", ct, "compare", "-f", "raw", "-F", "raw", expected, Uri(socket2));
            await Run("qemu-io", ct, "-r", "-f", "raw", "-c", "read -P 0x5a 12288 58000", "-c", "read -P 0 20971520 65536", Uri(socket2));
        }
    }

    [RequiresFact("qemu-img", "nbdcopy", Timeout = 240_000)]
    public async Task Many_small_reads_in_flight_over_a_layered_build_and_its_overlay_return_exactly_its_bytes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        CancellationToken ct = cts.Token;
        const int Size = 16 << 20;
        const int Block = 4096;
        byte[] expected = new byte[Size];
        var rng = new Random(11);
        rng.NextBytes(expected);
        expected.AsSpan(4 << 20, 2 << 20).Clear(); // a zero stretch: not stored, read as zeros
        string image = _dir.Combine("image.raw");
        await File.WriteAllBytesAsync(image, expected, ct);
        LayerStore store = LayerStore.OpenDirectory(_dir.Combine("store"));
        Guid top = (await store.ImportAsync(image, cancellationToken: ct)).BuildId;

        // Four layers of scattered 4 KiB writes, the first also every other block of 256 KiB, so
        // that one large read spans more file stretches than sendfile is used for.
        async Task WriteAsync(OverlayDevice overlay, long offset, byte value)
        {
            byte[] data = new byte[Block];
            Array.Fill(data, value);
            await overlay.WriteAsync(offset, data, ct);
            data.CopyTo(expected, offset);
        }
        for (int layer = 1; layer <= 4; layer++)
        {
            using Build parent = await store.OpenAsync(top, ct);
            using OverlayDevice overlay = OverlayDevice.Create(parent, _dir.Combine($"work{layer}"));
            for (int i = 0; i < 32; i++)
            {
                await WriteAsync(overlay, (long)rng.Next(Size / Block) * Block, (byte)layer);
            }
            for (int i = 0; layer == 1 && i < 64; i += 2)
            {
                await WriteAsync(overlay, (8 << 20) + ((long)i * Block), 0xee);
            }
            top = (await overlay.ExportAsync(store, null, ct)).BuildId;
        }

        string expectedBuild = _dir.Combine("expected-build.raw");
        await File.WriteAllBytesAsync(expectedBuild, expected, ct);
        using Build build = await store.OpenAsync(top, ct);
        using OverlayDevice dirty = OverlayDevice.Create(build, _dir.Combine("work-top"));
        for (int i = 0; i < 32; i++)
        {
            await WriteAsync(dirty, (long)rng.Next(Size / Block) * Block, 0x77); // read back from the cache file
        }
        string socket = _dir.Combine("layers.sock");
        await using var server = new NbdServer(new NbdServerOptions { UnixSocketPath = socket });
        server.AddExport("build", build);
        server.AddExport("overlay", dirty);
        await server.StartAsync(ct);
        string expectedOverlay = _dir.Combine("expected-overlay.raw");
        await File.WriteAllBytesAsync(expectedOverlay, expected, ct);
        foreach ((string export, string want) in new[] { ("build", expectedBuild), ("overlay", expectedOverlay) })
        {
            foreach (string requestSize in new[] { "4096", "262144" })
            {
                // One connection, 64 requests in flight: the server gets them in bursts and answers them in batches.
                string copied = _dir.Combine($"{export}-{requestSize}.raw");
                await Run("nbdcopy", ct, "--connections=1", "--requests=64", $"--request-size={requestSize}", "--no-extents", Uri(socket, export), copied);
                byte[] wanted = await File.ReadAllBytesAsync(want, ct);
                byte[] got = await File.ReadAllBytesAsync(copied, ct);
                Assert.True(wanted.AsSpan().SequenceEqual(got), $"{export}, {requestSize}-byte requests: wrong data");
            }
            await Run("qemu-img", ct, "compare", "-f", "raw", "-F", "raw", want, Uri(socket, export));
        }
    }
}
