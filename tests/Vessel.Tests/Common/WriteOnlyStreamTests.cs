using Vessel.Common;

namespace Vessel.Tests.Common;

public sealed class WriteOnlyStreamTests
{
    [Fact]
    public async Task Every_write_overload_reaches_the_one_span_write_in_order()
    {
        var sink = new RecordingSink();
        byte[] data = "0123456789"u8.ToArray();
        sink.Write(data, 0, 2);
        sink.Write(data.AsSpan(2, 2));
        sink.WriteByte(data[4]);
        await sink.WriteAsync(data.AsMemory(5, 2));
        await sink.WriteAsync(data, 7, 3, CancellationToken.None);
        await sink.FlushAsync();
        sink.Flush();
        Assert.Equal(data, sink.Written.ToArray());
    }

    [Fact]
    public async Task Reads_seeks_lengths_and_bad_arguments_throw_and_a_cancelled_write_writes_nothing()
    {
        var sink = new RecordingSink();
        Assert.True(sink.CanWrite);
        Assert.False(sink.CanRead);
        Assert.False(sink.CanSeek);
        Assert.Throws<NotSupportedException>(() => sink.Read(new byte[1], 0, 1));
        Assert.Throws<NotSupportedException>(() => sink.Seek(0, SeekOrigin.Begin));
        Assert.Throws<NotSupportedException>(() => sink.SetLength(1));
        Assert.Throws<NotSupportedException>(() => sink.Length);
        Assert.Throws<NotSupportedException>(() => sink.Position);
        Assert.ThrowsAny<ArgumentException>(() => sink.Write(new byte[2], 1, 2));
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sink.WriteAsync(new byte[] { 1 }, cancelled.Token).AsTask());
        Assert.Equal(0, sink.Written.Length);
    }

    private sealed class RecordingSink : WriteOnlyStream
    {
        public MemoryStream Written { get; } = new();

        public override void Write(ReadOnlySpan<byte> buffer) => Written.Write(buffer);
    }
}
