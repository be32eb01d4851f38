namespace Vessel.Testing;

/// <summary>
/// What every read-only stream of Vessel must do, after dotnet/runtime's stream conformance
/// tests (System.IO.Tests.StreamConformanceTests, used by TarReader.StreamConformanceTests):
/// reads of every size and both kinds give the bytes, a zero-length read and the end return 0,
/// bad arguments, a cancelled token and a disposed stream throw the documented exceptions,
/// writing and (unless it seeks) seeking are refused, dispose may repeat.
/// </summary>
public static class ReadStreamChecks
{
    /// <summary>Opens a fresh stream and says which bytes it must yield.</summary>
    public delegate Task<(Stream Stream, byte[] Expected)> Opener();

    public static async Task RunAllAsync(Opener open)
    {
        await AsyncReadsOfMixedSizesYieldTheBytesAsync(open);
        await SyncReadsYieldTheBytesAsync(open);
        await ReadByteYieldsEachByteThenMinusOneAsync(open);
        await ZeroLengthAndPastTheEndReadsReturnZeroAsync(open);
        await BadArgumentsThrowAsync(open);
        await ACancelledTokenThrowsAsync(open);
        await WritingAndSeekingAreRefusedAsync(open);
        await ADisposedStreamRefusesReadsAndDisposeRepeatsAsync(open);
        await CopyToAsyncYieldsTheBytesAsync(open);
    }

    public static async Task AsyncReadsOfMixedSizesYieldTheBytesAsync(Opener open)
    {
        (Stream stream, byte[] expected) = await open();
        await using (stream)
        {
            var got = new MemoryStream();
            int[] sizes = [1, 7, 512, 4093, 65536];
            for (int i = 0; ; i++)
            {
                byte[] buffer = new byte[sizes[i % sizes.Length] + 3];
                int n = i % 2 == 0
                    ? await stream.ReadAsync(buffer.AsMemory(3), CancellationToken.None)
                    : await stream.ReadAsync(buffer, 3, buffer.Length - 3, CancellationToken.None);
                Assert.InRange(n, 0, buffer.Length - 3);
                if (n == 0)
                {
                    break;
                }
                got.Write(buffer, 3, n);
            }
            Assert.Equal(expected, got.ToArray());
        }
    }

    public static async Task SyncReadsYieldTheBytesAsync(Opener open)
    {
        (Stream stream, byte[] expected) = await open();
        await using (stream)
        {
            var got = new MemoryStream();
            byte[] buffer = new byte[3000];
            for (int i = 0; ; i++)
            {
                int n = i % 2 == 0 ? stream.Read(buffer, 0, buffer.Length) : stream.Read(buffer.AsSpan(0, 100));
                if (n == 0)
                {
                    break;
                }
                got.Write(buffer, 0, n);
            }
            Assert.Equal(expected, got.ToArray());
        }
    }

    public static async Task ReadByteYieldsEachByteThenMinusOneAsync(Opener open)
    {
        (Stream stream, byte[] expected) = await open();
        await using (stream)
        {
            int count = Math.Min(expected.Length, 600);
            for (int i = 0; i < count; i++)
            {
                Assert.Equal(expected[i], stream.ReadByte());
            }
            await stream.CopyToAsync(Stream.Null);
            Assert.Equal(-1, stream.ReadByte());
        }
    }

    public static async Task ZeroLengthAndPastTheEndReadsReturnZeroAsync(Opener open)
    {
        (Stream stream, _) = await open();
        await using (stream)
        {
            Assert.Equal(0, await stream.ReadAsync(Memory<byte>.Empty));
            Assert.Equal(0, stream.Read([], 0, 0));
            await stream.CopyToAsync(Stream.Null);
            byte[] buffer = new byte[16];
            Assert.Equal(0, await stream.ReadAsync(buffer));
            Assert.Equal(0, await stream.ReadAsync(buffer));
            Assert.Equal(0, stream.Read(buffer, 0, buffer.Length));
        }
    }

    public static async Task BadArgumentsThrowAsync(Opener open)
    {
        (Stream stream, _) = await open();
        await using (stream)
        {
            byte[] buffer = new byte[8];
            Assert.Throws<ArgumentNullException>(() => stream.Read(null!, 0, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => stream.Read(buffer, -1, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => stream.Read(buffer, 0, -1));
            Assert.ThrowsAny<ArgumentException>(() => stream.Read(buffer, 4, 5));
            await Assert.ThrowsAsync<ArgumentNullException>(() => stream.ReadAsync(null!, 0, 1));
            await Assert.ThrowsAnyAsync<ArgumentException>(() => stream.ReadAsync(buffer, 6, 3));
        }
    }

    public static async Task ACancelledTokenThrowsAsync(Opener open)
    {
        (Stream stream, _) = await open();
        await using (stream)
        {
            using var cts = new CancellationTokenSource();
            await cts.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stream.ReadAsync(new byte[8], cts.Token).AsTask());
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stream.ReadAsync(new byte[8], 0, 8, cts.Token));
        }
    }

    public static async Task WritingAndSeekingAreRefusedAsync(Opener open)
    {
        (Stream stream, byte[] expected) = await open();
        await using (stream)
        {
            Assert.True(stream.CanRead);
            Assert.False(stream.CanWrite);
            Assert.Throws<NotSupportedException>(() => stream.Write(new byte[1], 0, 1));
            Assert.Throws<NotSupportedException>(() => stream.WriteByte(1));
            await Assert.ThrowsAsync<NotSupportedException>(async () => await stream.WriteAsync(new byte[1]));
            Assert.Throws<NotSupportedException>(() => stream.SetLength(1));
            stream.Flush();
            await stream.FlushAsync();
            if (stream.CanSeek)
            {
                Assert.Equal(expected.Length, stream.Length);
                stream.Seek(-1, SeekOrigin.End);
                Assert.Equal(expected[^1], stream.ReadByte());
                stream.Position = 0;
                Assert.Equal(expected[0], stream.ReadByte());
            }
            else
            {
                Assert.Throws<NotSupportedException>(() => stream.Seek(0, SeekOrigin.Begin));
                Assert.Throws<NotSupportedException>(() => stream.Length);
                Assert.Throws<NotSupportedException>(() => stream.Position = 0);
            }
        }
    }

    public static async Task ADisposedStreamRefusesReadsAndDisposeRepeatsAsync(Opener open)
    {
        (Stream stream, _) = await open();
        await stream.DisposeAsync();
        Assert.False(stream.CanRead);
        Assert.False(stream.CanWrite);
        Assert.False(stream.CanSeek);
        Assert.Throws<ObjectDisposedException>(() => stream.Read(new byte[1], 0, 1));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => stream.ReadAsync(new byte[1]).AsTask());
        stream.Dispose();
        await stream.DisposeAsync();

        (Stream second, _) = await open();
        second.Dispose(); // the synchronous dispose releases what the stream owns too
        Assert.False(second.CanRead);
        await second.DisposeAsync();
    }

    public static async Task CopyToAsyncYieldsTheBytesAsync(Opener open)
    {
        (Stream stream, byte[] expected) = await open();
        await using (stream)
        {
            var got = new MemoryStream();
            await stream.CopyToAsync(got, 1000);
            Assert.Equal(expected, got.ToArray());
        }
    }
}

/// <summary>The checks of <see cref="ReadStreamChecks"/> as one fact each; a subclass says how to open its stream.</summary>
public abstract class ReadStreamConformanceTests
{
    protected abstract Task<(Stream Stream, byte[] Expected)> OpenAsync();

    [Fact(Timeout = 30_000)]
    public Task Async_reads_of_mixed_sizes_yield_the_bytes() => ReadStreamChecks.AsyncReadsOfMixedSizesYieldTheBytesAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task Sync_reads_yield_the_bytes() => ReadStreamChecks.SyncReadsYieldTheBytesAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task ReadByte_yields_each_byte_then_minus_one() => ReadStreamChecks.ReadByteYieldsEachByteThenMinusOneAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task Zero_length_and_past_the_end_reads_return_zero() => ReadStreamChecks.ZeroLengthAndPastTheEndReadsReturnZeroAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task Bad_arguments_throw() => ReadStreamChecks.BadArgumentsThrowAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task A_cancelled_token_throws() => ReadStreamChecks.ACancelledTokenThrowsAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task Writing_and_seeking_are_refused() => ReadStreamChecks.WritingAndSeekingAreRefusedAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task A_disposed_stream_refuses_reads_and_dispose_repeats() => ReadStreamChecks.ADisposedStreamRefusesReadsAndDisposeRepeatsAsync(OpenAsync);

    [Fact(Timeout = 30_000)]
    public Task CopyToAsync_yields_the_bytes() => ReadStreamChecks.CopyToAsyncYieldsTheBytesAsync(OpenAsync);
}
