using Vessel.Tar;

namespace Vessel.Tests.Common;

/// <summary>Sample content: long enough for several reads of every size, not a multiple of any of them.</summary>
internal static class StreamSamples
{
    public static byte[] Content { get; } = Make(200_003);

    private static byte[] Make(int length)
    {
        byte[] data = new byte[length];
        new Random(12).NextBytes(data);
        return data;
    }

    public static byte[] Zstd(byte[] data)
    {
        var psi = new ProcessStartInfo("zstd", ["-q", "-c", "-1"]) { RedirectStandardInput = true, RedirectStandardOutput = true };
        using Process zstd = Process.Start(psi)!;
        var output = new MemoryStream();
        Task copy = zstd.StandardOutput.BaseStream.CopyToAsync(output);
        zstd.StandardInput.BaseStream.Write(data);
        zstd.StandardInput.Close();
        copy.Wait();
        zstd.WaitForExit();
        return output.ToArray();
    }
}

public sealed class ReadAheadStreamConformanceTests : ReadStreamConformanceTests
{
    protected override Task<(Stream Stream, byte[] Expected)> OpenAsync() =>
        Task.FromResult<(Stream, byte[])>((new ReadAheadStream(new MemoryStream(StreamSamples.Content), chunkSize: 4096, chunks: 2), StreamSamples.Content));
}

public sealed class PrefixedStreamConformanceTests : ReadStreamConformanceTests
{
    protected override Task<(Stream Stream, byte[] Expected)> OpenAsync()
    {
        byte[] data = StreamSamples.Content;
        var stream = new PrefixedStream(data.AsMemory(0, 1000), new MemoryStream(data, 1000, data.Length - 1000, writable: false), leaveOpen: false);
        return Task.FromResult<(Stream, byte[])>((stream, data));
    }
}

public sealed class DigestVerifyingStreamConformanceTests : ReadStreamConformanceTests
{
    protected override Task<(Stream Stream, byte[] Expected)> OpenAsync()
    {
        byte[] data = StreamSamples.Content;
        var stream = new DigestVerifyingStream(new MemoryStream(data), OciDigest.Compute(data), data.Length, "a blob");
        return Task.FromResult<(Stream, byte[])>((stream, data));
    }
}

public sealed class GzipLayerStreamConformanceTests : ReadStreamConformanceTests
{
    private static readonly byte[] Compressed = LayersImageSource.Gzip(StreamSamples.Content);

    protected override async Task<(Stream Stream, byte[] Expected)> OpenAsync()
    {
        var blob = new DigestVerifyingStream(new MemoryStream(Compressed), OciDigest.Compute(Compressed), Compressed.Length, "a layer");
        LayerStream layer = await LayerStream.OpenAsync(blob, OciDigest.Compute(StreamSamples.Content), "a layer", CancellationToken.None);
        return (layer, StreamSamples.Content);
    }
}

public sealed class ZstdProcessStreamConformanceTests : ReadStreamConformanceTests
{
    private static readonly Lazy<byte[]> Compressed = new(() => StreamSamples.Zstd(StreamSamples.Content));

    protected override Task<(Stream Stream, byte[] Expected)> OpenAsync() =>
        Task.FromResult<(Stream, byte[])>((ZstdProcessStream.Start(new MemoryStream(Compressed.Value), "a zstd layer"), StreamSamples.Content));
}

public sealed class TarMemberStreamConformanceTests : ReadStreamConformanceTests, IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-member-");
    private readonly List<TarArchiveIndex> _indexes = [];

    protected override async Task<(Stream Stream, byte[] Expected)> OpenAsync()
    {
        string path = Path.Combine(_dir.Path, "archive.tar");
        if (!File.Exists(path))
        {
            await using var writer = new TarWriter(File.Create(path));
            await writer.WriteFileAsync("first", (UnixFileMode)0x1A4, DateTimeOffset.UnixEpoch, new MemoryStream(new byte[700]), 700, CancellationToken.None);
            await writer.WriteFileAsync("member", (UnixFileMode)0x1A4, DateTimeOffset.UnixEpoch, new MemoryStream(StreamSamples.Content), StreamSamples.Content.Length, CancellationToken.None);
        }
        TarArchiveIndex index = TarArchiveIndex.Open(path, "a test archive", CancellationToken.None);
        _indexes.Add(index);
        return (index.OpenMember(index.Find("member", "a test archive")!), StreamSamples.Content);
    }

    public void Dispose()
    {
        _indexes.ForEach(i => i.Dispose());
        _dir.Dispose();
    }
}
