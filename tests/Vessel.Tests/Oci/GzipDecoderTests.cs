namespace Vessel.Tests.Oci;

/// <summary>Gzip tarballs made by the real <c>gzip</c>, read as <c>gzip -d</c> reads them (it is the oracle).</summary>
public sealed class GzipDecoderTests : IDisposable
{
    private const int Timeout = 60_000;
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-gzip-test-");

    public void Dispose() => _dir.Dispose();

    private static async Task<byte[]> ReadLayerAsync(string file, CancellationToken ct)
    {
        await using IImageSource source = await ImageSources.OpenAsync(file, ImageSourceOptions.Default, ct);
        await source.ResolveAsync(ct);
        await using Stream layer = await source.OpenLayerAsync(0, ct);
        return await TestImage.ReadAllAsync(layer, ct);
    }

    /// <summary>A tar split in two at a random point, each part compressed by gzip, the second appended: two members.</summary>
    private async Task<(string File, byte[] Tar, long FirstMember)> TwoMemberTarballAsync(CancellationToken ct)
    {
        var rnd = new Random(7);
        byte[] big = new byte[200_000];
        rnd.NextBytes(big);
        byte[] tar = TestImage.Tar(("etc/hostname", "multi\n"), ("blob", Convert.ToBase64String(big)), ("etc/motd", "hi\n"));
        int cut = tar.Length / 3;
        string a = _dir.Combine("a.part");
        string b = _dir.Combine("b.part");
        await File.WriteAllBytesAsync(a, tar[..cut], ct);
        await File.WriteAllBytesAsync(b, tar[cut..], ct);
        string file = _dir.Combine("multi.tar.gz");
        (await ExternalProcess.RunAsync("sh", ["-c", $"gzip -c '{a}' > '{file}'"], ct)).EnsureSuccess();
        long first = new FileInfo(file).Length;
        (await ExternalProcess.RunAsync("sh", ["-c", $"gzip -c '{b}' >> '{file}'"], ct)).EnsureSuccess();
        return (file, tar, first);
    }

    private static async Task<ProcessResult> GzipTestAsync(string file, CancellationToken ct) =>
        await ExternalProcess.RunAsync("gzip", ["-t", file], ct);

    /// <summary>gzip -t accepts <paramref name="file"/>, and the layer reader decodes it to <paramref name="tar"/>.</summary>
    private static async Task AssertAcceptedAsync(string file, byte[] tar, CancellationToken ct)
    {
        Assert.Equal(0, (await GzipTestAsync(file, ct)).ExitCode);
        Assert.Equal(tar, await ReadLayerAsync(file, ct));
    }

    [RequiresFact("gzip", Timeout = Timeout)]
    public async Task A_multi_member_tarball_made_by_gzip_decodes_whole()
    {
        using var cts = new CancellationTokenSource(Timeout);
        (string file, byte[] tar, _) = await TwoMemberTarballAsync(cts.Token);
        await AssertAcceptedAsync(file, tar, cts.Token);
    }

    [RequiresFact("gzip", Timeout = Timeout)]
    public async Task Trailing_garbage_after_the_last_member_is_refused_as_trailing_garbage()
    {
        using var cts = new CancellationTokenSource(Timeout);
        (string file, _, _) = await TwoMemberTarballAsync(cts.Token);
        long end = new FileInfo(file).Length;
        await File.AppendAllTextAsync(file, "not gzip at all", cts.Token);
        ProcessResult oracle = await GzipTestAsync(file, cts.Token);
        Assert.Contains("trailing garbage", oracle.StandardError, StringComparison.Ordinal);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => ReadLayerAsync(file, cts.Token));
        Assert.Contains("trailing garbage after the gzip data", e.Message, StringComparison.Ordinal);
        Assert.Contains($"offset {end}", e.Message, StringComparison.Ordinal);
        Assert.Contains("after member 2", e.Message, StringComparison.Ordinal);
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("gzip", Timeout = Timeout)]
    public async Task Zero_padding_after_the_last_member_is_accepted_as_gzip_accepts_it()
    {
        using var cts = new CancellationTokenSource(Timeout);
        (string file, byte[] tar, _) = await TwoMemberTarballAsync(cts.Token);
        await using (var f = new FileStream(file, FileMode.Append))
        {
            f.Write(new byte[10_240]); // a tape block's worth, as some tools pad
        }
        await AssertAcceptedAsync(file, tar, cts.Token);
    }

    [RequiresFact("gzip", Timeout = Timeout)]
    public async Task A_member_cut_short_is_refused_as_truncated()
    {
        using var cts = new CancellationTokenSource(Timeout);
        (string file, _, _) = await TwoMemberTarballAsync(cts.Token);
        byte[] all = await File.ReadAllBytesAsync(file, cts.Token);
        await File.WriteAllBytesAsync(file, all[..^5], cts.Token); // into the second member's trailer
        Assert.NotEqual(0, (await GzipTestAsync(file, cts.Token)).ExitCode);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => ReadLayerAsync(file, cts.Token));
        Assert.Contains("gzip data is truncated: it ends inside member 2", e.Message, StringComparison.Ordinal);
    }

    [RequiresFact("gzip", Timeout = Timeout)]
    public async Task A_wrong_crc_in_the_first_member_is_refused_as_corrupt()
    {
        using var cts = new CancellationTokenSource(Timeout);
        (string file, _, long first) = await TwoMemberTarballAsync(cts.Token);
        byte[] all = await File.ReadAllBytesAsync(file, cts.Token);
        all[first - 8] ^= 0xff; // the CRC-32 in member 1's trailer (RFC 1952, 2.2)
        await File.WriteAllBytesAsync(file, all, cts.Token);
        Assert.NotEqual(0, (await GzipTestAsync(file, cts.Token)).ExitCode);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => ReadLayerAsync(file, cts.Token));
        Assert.Contains("gzip data is corrupt", e.Message, StringComparison.Ordinal);
        Assert.Contains("member 1", e.Message, StringComparison.Ordinal);
    }
}
