using System.Buffers.Binary;
using Vessel.Nbd;

namespace Vessel.Tests.Nbd;

/// <summary>Hostile and edge-case clients, spoken to byte by byte over a real unix socket.</summary>
public sealed class NbdServerTests : IAsyncLifetime
{
    private const int Size = 1 << 20;
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-nbd-test-");
    private byte[] _content = [];
    private FlatFileDevice? _rw;
    private FlatFileDevice? _ro;
    private NbdServer? _server;

    private string SocketPath => _dir.Combine("nbd.sock");

    public async Task InitializeAsync()
    {
        _content = new byte[Size];
        new Random(1).NextBytes(_content);
        await File.WriteAllBytesAsync(_dir.Combine("rw.raw"), _content);
        await File.WriteAllBytesAsync(_dir.Combine("ro.raw"), _content);
        _rw = FlatFileDevice.Open(_dir.Combine("rw.raw"), readOnly: false);
        _ro = FlatFileDevice.Open(_dir.Combine("ro.raw"), readOnly: true);
        _server = new NbdServer(new NbdServerOptions { UnixSocketPath = SocketPath, HandshakeTimeout = TimeSpan.FromSeconds(5) });
        _server.AddExport("rw", _rw);
        _server.AddExport("ro", _ro, readOnly: true);
        await _server.StartAsync(CancellationToken.None);
    }

    /// <summary>A raw client connected to the server that chose <paramref name="export"/> (NBD_OPT_GO).</summary>
    private async Task<RawNbdClient> OpenAsync(string export)
    {
        RawNbdClient client = await RawNbdClient.ConnectAsync(SocketPath);
        try
        {
            await client.GoAsync(export);
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/> and asserts they are the export's content.</summary>
    private async Task AssertReadsContentAsync(RawNbdClient client, ulong cookie, int offset, int length)
    {
        await client.SendRequestAsync(NbdCommand.Read, cookie, (ulong)offset, (uint)length);
        Assert.Equal(_content.AsSpan(offset, length).ToArray(), (await client.ReadSimpleReplyAsync(length)).Data);
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
        _rw?.Dispose();
        _ro?.Dispose();
        _dir.Dispose();
    }

    [Fact(Timeout = 20_000)]
    public async Task Go_on_an_unknown_export_is_refused_and_the_client_may_retry()
    {
        using RawNbdClient c = await RawNbdClient.ConnectAsync(SocketPath);
        (NbdOptionReply reply, _, _) = await c.GoAsync("nope");
        Assert.Equal(NbdOptionReply.ErrUnknown, reply);
    }

    [Fact(Timeout = 20_000)]
    public async Task Read_past_the_end_gets_EINVAL_and_the_connection_keeps_working()
    {
        using RawNbdClient c = await RawNbdClient.ConnectAsync(SocketPath);
        (NbdOptionReply reply, ulong size, _) = await c.GoAsync("ro");
        Assert.Equal(NbdOptionReply.Ack, reply);
        Assert.Equal((ulong)Size, size);

        await c.SendRequestAsync(NbdCommand.Read, 1, Size - 10, 20);
        var (error, cookie, _) = await c.ReadSimpleReplyAsync();
        Assert.Equal(NbdError.Invalid, error);
        Assert.Equal(1ul, cookie);

        await c.SendRequestAsync(NbdCommand.Read, 2, ulong.MaxValue - 5, 4096); // offset + length overflows
        Assert.Equal(NbdError.Invalid, (await c.ReadSimpleReplyAsync()).Error);

        await c.SendRequestAsync(NbdCommand.Read, 3, 4096, 100);
        var ok = await c.ReadSimpleReplyAsync(100);
        Assert.Equal(NbdError.None, ok.Error);
        Assert.Equal(_content.AsSpan(4096, 100).ToArray(), ok.Data);
    }

    [Fact(Timeout = 20_000)]
    public async Task Write_to_a_read_only_export_gets_EPERM_and_changes_nothing()
    {
        using RawNbdClient c = await RawNbdClient.ConnectAsync(SocketPath);
        (_, _, ushort flags) = await c.GoAsync("ro");
        Assert.NotEqual(0, flags & (ushort)NbdTransmissionFlags.ReadOnly);
        await c.SendRequestAsync(NbdCommand.Write, 9, 0, 512, new byte[512]);
        Assert.Equal(NbdError.Perm, (await c.ReadSimpleReplyAsync()).Error);
        await c.SendRequestAsync(NbdCommand.Trim, 10, 0, 512);
        Assert.Equal(NbdError.Perm, (await c.ReadSimpleReplyAsync()).Error);
        Assert.Equal(_content, await File.ReadAllBytesAsync(_dir.Combine("ro.raw")));
    }

    [Fact(Timeout = 20_000)]
    public async Task Bad_request_magic_closes_that_connection_only()
    {
        using RawNbdClient good = await OpenAsync("ro");
        using RawNbdClient bad = await OpenAsync("ro");
        await bad.SendRequestAsync(NbdCommand.Read, 1, 0, 512, magic: 0xdeadbeef);
        Assert.True(await bad.IsClosedByServerAsync(TimeSpan.FromSeconds(5)));

        await AssertReadsContentAsync(good, 2, 0, 512);
    }

    [Fact(Timeout = 20_000)]
    public async Task Oversized_write_and_oversized_option_close_the_connection()
    {
        using RawNbdClient w = await OpenAsync("rw");
        await w.SendRequestAsync(NbdCommand.Write, 1, 0, 64u << 20);
        Assert.True(await w.IsClosedByServerAsync(TimeSpan.FromSeconds(5)));

        using RawNbdClient o = await RawNbdClient.ConnectAsync(SocketPath);
        await o.ReadAsync(18);
        await o.WriteAsync([0, 0, 0, 3]);
        byte[] header = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(header, NbdProtocol.IHaveOpt);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), (uint)NbdOption.Go);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), uint.MaxValue);
        await o.WriteAsync(header);
        Assert.True(await o.IsClosedByServerAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(_content, await File.ReadAllBytesAsync(_dir.Combine("rw.raw")));
    }

    [Fact(Timeout = 20_000)]
    public async Task A_client_vanishing_mid_write_leaves_the_data_intact_and_others_served()
    {
        using (RawNbdClient gone = await RawNbdClient.ConnectAsync(SocketPath))
        {
            await gone.GoAsync("rw");
            byte[] m = new byte[NbdRequest.Size + 1000];
            new NbdRequest(NbdCommandFlags.None, NbdCommand.Write, 1, 0, 4096).Write(m); // promises 4096, sends 1000
            await gone.WriteAsync(m);
        }
        using RawNbdClient next = await OpenAsync("rw");
        await AssertReadsContentAsync(next, 5, 0, 4096);
        Assert.Equal(_content, await File.ReadAllBytesAsync(_dir.Combine("rw.raw")));
    }

    [Fact(Timeout = 20_000)]
    public async Task A_silent_client_is_dropped_after_the_handshake_timeout()
    {
        using RawNbdClient c = await RawNbdClient.ConnectAsync(SocketPath);
        await c.ReadAsync(18);
        Assert.True(await c.IsClosedByServerAsync(TimeSpan.FromSeconds(15)));
    }

    [Fact(Timeout = 20_000)]
    public async Task Replies_go_out_as_requests_complete_not_in_order()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _server!.AddExport("gated", new GatedDevice(_ro!, gate.Task));
        using RawNbdClient c = await OpenAsync("gated");
        await c.SendRequestAsync(NbdCommand.Read, 100, 0, 512); // waits on the gate
        await c.SendRequestAsync(NbdCommand.Read, 200, 4096, 512); // answers at once
        var first = await c.ReadSimpleReplyAsync(512);
        Assert.Equal(200ul, first.Cookie);
        gate.SetResult();
        var second = await c.ReadSimpleReplyAsync(512);
        Assert.Equal(100ul, second.Cookie);
        Assert.Equal(_content.AsSpan(0, 512).ToArray(), second.Data);
    }

    [Theory(Timeout = 20_000)]
    [InlineData("ro")] // cached reads are copied (small) or sent with sendfile (large)
    [InlineData("rw")] // a writable file is always copied
    public async Task Pipelined_reads_of_every_size_are_each_answered_once_with_the_right_data(string export)
    {
        using RawNbdClient c = await OpenAsync(export);
        var rng = new Random(5);
        var expected = new Dictionary<ulong, (int Offset, int Length)>();
        var requests = new List<byte>();
        for (ulong cookie = 1; cookie <= 200; cookie++)
        {
            // Mostly small reads (gathered into one send), some large ones, and one invalid.
            int length = cookie % 25 == 0 ? 128 << 10 : rng.Next(1, 9000);
            int offset = rng.Next(0, Size - length);
            ulong wire = cookie == 100 ? Size + 1ul : (ulong)offset;
            byte[] m = new byte[NbdRequest.Size];
            new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, cookie, wire, (uint)length).Write(m);
            requests.AddRange(m);
            expected[cookie] = (offset, length);
        }
        await c.WriteAsync([.. requests]); // one write: the server finds them all buffered
        for (int i = 0; i < 200; i++)
        {
            byte[] h = await c.ReadAsync(16);
            var error = (NbdError)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4));
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8));
            Assert.True(expected.Remove(cookie, out var r), $"cookie {cookie} answered twice or never asked");
            if (cookie == 100)
            {
                Assert.Equal(NbdError.Invalid, error);
                continue;
            }
            Assert.Equal(NbdError.None, error);
            byte[] data = await c.ReadAsync(r.Length);
            Assert.True(data.AsSpan().SequenceEqual(_content.AsSpan(r.Offset, r.Length)), $"cookie {cookie}: wrong data");
        }
        Assert.Empty(expected);
    }

    [Fact(Timeout = 20_000)]
    public async Task Writes_and_reads_in_one_packet_and_a_request_sent_byte_by_byte_are_all_answered()
    {
        using RawNbdClient c = await OpenAsync("rw");
        byte[] small = new byte[4096];
        byte[] large = new byte[200 << 10]; // larger than the server's input buffer: received straight into the payload
        new Random(7).NextBytes(small);
        new Random(8).NextBytes(large);
        var packet = new List<byte>();
        void Add(NbdCommand command, ulong cookie, ulong offset, uint length, byte[]? payload = null)
        {
            byte[] m = new byte[NbdRequest.Size];
            new NbdRequest(NbdCommandFlags.None, command, cookie, offset, length).Write(m);
            packet.AddRange(m);
            packet.AddRange(payload ?? []);
        }
        Add(NbdCommand.Write, 1, 0, (uint)small.Length, small);
        Add(NbdCommand.Read, 2, 512 << 10, 4096);
        Add(NbdCommand.Write, 3, 64 << 10, (uint)large.Length, large);
        Add(NbdCommand.Read, 4, 768 << 10, 4096);
        Add(NbdCommand.Flush, 5, 0, 0);
        await c.WriteAsync([.. packet]);
        var seen = new HashSet<ulong>();
        for (int i = 0; i < 5; i++)
        {
            byte[] h = await c.ReadAsync(16);
            Assert.Equal(NbdError.None, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4)));
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8));
            Assert.True(seen.Add(cookie), $"cookie {cookie} answered twice");
            if (cookie is 2 or 4)
            {
                int at = cookie == 2 ? 512 << 10 : 768 << 10;
                Assert.True((await c.ReadAsync(4096)).AsSpan().SequenceEqual(_content.AsSpan(at, 4096)), $"cookie {cookie}: wrong data");
            }
        }

        // A slow client: one request header in 28 sends.
        byte[] read = new byte[NbdRequest.Size];
        new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, 6, 0, 4096).Write(read);
        foreach (byte b in read)
        {
            await c.WriteAsync([b]);
            await Task.Delay(2);
        }
        var r = await c.ReadSimpleReplyAsync(4096);
        Assert.Equal((NbdError.None, 6ul), (r.Error, r.Cookie));
        Assert.Equal(small, r.Data);

        byte[] expected = [.. _content];
        small.CopyTo(expected, 0);
        large.CopyTo(expected, 64 << 10);
        Assert.Equal(expected, await File.ReadAllBytesAsync(_dir.Combine("rw.raw")));
    }

    [Fact(Timeout = 20_000)]
    public async Task A_client_vanishing_mid_batch_is_dropped_and_others_are_served()
    {
        using RawNbdClient good = await OpenAsync("ro");
        using (RawNbdClient gone = await RawNbdClient.ConnectAsync(SocketPath))
        {
            await gone.GoAsync("ro");
            byte[] burst = new byte[2000 * NbdRequest.Size];
            for (int i = 0; i < 2000; i++)
            {
                new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, (ulong)i, (ulong)(i * 4096 % (Size - 4096)), 4096).Write(burst.AsSpan(i * NbdRequest.Size));
            }
            await gone.WriteAsync(burst);
            await gone.ReadAsync(100); // part of the first reply: the server is in the middle of the batch
        }
        // Its thread ends (RunAsync waits for it before the connection is removed); the other client is unaffected.
        await WaitForAsync(() => _server!.ConnectionCount == 1, TimeSpan.FromSeconds(10));
        await AssertReadsContentAsync(good, 9, 8192, 4096);
    }

    [Fact(Timeout = 20_000)]
    public async Task A_client_that_never_reads_its_replies_blocks_only_itself_and_not_shutdown()
    {
        using RawNbdClient stuck = await OpenAsync("ro");
        // 128 MiB of replies asked for, none read: the server's sends wait for socket space.
        byte[] burst = new byte[4096 * NbdRequest.Size];
        for (int i = 0; i < 4096; i++)
        {
            new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, (ulong)i, 0, 32 << 10).Write(burst.AsSpan(i * NbdRequest.Size));
        }
        await stuck.WriteAsync(burst);
        await Task.Delay(200);

        using RawNbdClient good = await OpenAsync("ro");
        await AssertReadsContentAsync(good, 1, 4096, 4096);

        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        await _server!.DisposeAsync();
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"shutdown took {stopwatch.Elapsed}");
        Assert.Equal(0, _server.ConnectionCount);
    }

    private static async Task WaitForAsync(Func<bool> condition, TimeSpan within)
    {
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(stopwatch.Elapsed < within, "condition not reached in time");
            await Task.Delay(20);
        }
    }

    [Fact(Timeout = 20_000)]
    public async Task Dispose_closes_clients_and_removes_the_socket_file()
    {
        using RawNbdClient c = await OpenAsync("ro");
        Assert.Equal(1, _server!.ConnectionCount);
        await _server.DisposeAsync();
        Assert.False(File.Exists(SocketPath));
        Assert.True(await c.IsClosedByServerAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, _server.ConnectionCount);
    }

    [Fact(Timeout = 20_000)]
    public async Task A_second_server_refuses_a_live_socket_and_replaces_a_stale_one()
    {
        await using var other = new NbdServer(new NbdServerOptions { UnixSocketPath = SocketPath });
        var e = await Assert.ThrowsAsync<VesselException>(() => other.StartAsync(CancellationToken.None));
        Assert.Equal(VesselErrorReason.AlreadyExists, e.Reason);

        string regular = _dir.Combine("not-a-socket");
        await File.WriteAllTextAsync(regular, "keep me");
        await using var third = new NbdServer(new NbdServerOptions { UnixSocketPath = regular });
        await Assert.ThrowsAsync<VesselException>(() => third.StartAsync(CancellationToken.None));
        Assert.Equal("keep me", await File.ReadAllTextAsync(regular));

        // A crashed server's socket file: nobody listens, so it is replaced.
        string stale = _dir.Combine("stale.sock");
        Assert.True(Vessel.Interop.UnixFile.IsSocket(SocketPath));
        using (var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            string bound = _dir.Combine("bound.sock");
            s.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(bound));
            File.Move(bound, stale); // .NET unlinks the path it bound on dispose; the moved file stays behind
        }
        Assert.True(Vessel.Interop.UnixFile.IsSocket(stale));
        await using var fourth = new NbdServer(new NbdServerOptions { UnixSocketPath = stale });
        fourth.AddExport("", _ro!);
        await fourth.StartAsync(CancellationToken.None);
        using RawNbdClient c = await RawNbdClient.ConnectAsync(stale);
        Assert.Equal(NbdOptionReply.Ack, (await c.GoAsync("")).Reply);
    }

    /// <summary>A fault a real peer cannot produce on demand: a read of offset 0 that waits for the test.</summary>
    private sealed class GatedDevice(IBlockDevice device, Task gate) : IBlockDevice
    {
        public long Size => device.Size;

        public int BlockSize => 4096;

        public bool IsReadOnly => true;

        public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        {
            if (offset == 0)
            {
                await gate.WaitAsync(cancellationToken);
            }
            await device.ReadAsync(offset, destination, cancellationToken);
        }

        // The gated read is never "cached", so it takes the concurrent path and waits there.
        public bool TryReadCached(long offset, Span<byte> destination) => offset != 0 && device.TryReadCached(offset, destination);

        public bool TryGetCachedFileRanges(long offset, int length, List<FileRange> ranges)
            => offset != 0 && device.TryGetCachedFileRanges(offset, length, ranges);

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken) => throw new NotSupportedException();

        public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => throw new NotSupportedException();

        public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken) => throw new NotSupportedException();

        public ValueTask FlushAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public IReadOnlyList<DeviceExtent> GetExtents(long offset, long length, int maxExtents) => device.GetExtents(offset, length, maxExtents);
    }
}
