using System.Buffers.Binary;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Vessel.Containerd.Api.Task;
using Vessel.Containerd.Ttrpc;
using Vessel.Containerd.Ttrpc.Wire;
using StatusCode = Grpc.Core.StatusCode;

namespace Vessel.Tests.Containerd;

public sealed class TtrpcTests
{
    [Fact]
    public void A_frame_header_is_ten_big_endian_bytes_as_the_protocol_draws_it()
    {
        byte[] bytes = new byte[TtrpcFrameHeader.Size];
        new TtrpcFrameHeader(0x0102_0304, 7, TtrpcMessageType.Response, 0x05).Write(bytes);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 0, 0, 0, 7, 2, 5 }, bytes);
        Assert.Equal(new TtrpcFrameHeader(0x0102_0304, 7, TtrpcMessageType.Response, 5), TtrpcFrameHeader.Read(bytes));
    }

    [Fact]
    public async Task A_frame_round_trips_and_a_stream_ending_between_frames_is_a_clean_end()
    {
        using var stream = new MemoryStream();
        await TtrpcFraming.WriteAsync(stream, 3, TtrpcMessageType.Request, 0, "hello"u8.ToArray(), CancellationToken.None);
        stream.Position = 0;
        TtrpcFrame? frame = await TtrpcFraming.ReadAsync(stream, CancellationToken.None);
        Assert.NotNull(frame);
        Assert.Equal(3u, frame.Value.Header.StreamId);
        Assert.Equal("hello"u8.ToArray(), frame.Value.Data);
        Assert.Null(await TtrpcFraming.ReadAsync(stream, CancellationToken.None));
    }

    [Fact]
    public async Task A_frame_declaring_more_than_4_MiB_is_refused_before_its_data_is_read()
    {
        byte[] header = new byte[TtrpcFrameHeader.Size];
        new TtrpcFrameHeader((4 << 20) + 1, 1, TtrpcMessageType.Request, 0).Write(header);
        using var stream = new MemoryStream(header);
        var e = await Assert.ThrowsAsync<TtrpcProtocolException>(() => TtrpcFraming.ReadAsync(stream, CancellationToken.None));
        Assert.Contains("4194305 bytes", e.Message, StringComparison.Ordinal);
        Assert.Contains("limit", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Writing_a_frame_over_4_MiB_is_refused()
    {
        using var stream = new MemoryStream();
        await Assert.ThrowsAsync<TtrpcProtocolException>(() => TtrpcFraming.WriteAsync(stream, 1, TtrpcMessageType.Response, 0, new byte[(4 << 20) + 1], CancellationToken.None));
        Assert.Equal(0, stream.Length);
    }

    [Theory]
    [InlineData(4)] // inside the header
    [InlineData(TtrpcFrameHeader.Size + 2)] // inside the data
    public async Task A_stream_ending_inside_a_frame_is_a_protocol_error(int keep)
    {
        using var full = new MemoryStream();
        await TtrpcFraming.WriteAsync(full, 1, TtrpcMessageType.Request, 0, "payload"u8.ToArray(), CancellationToken.None);
        using var truncated = new MemoryStream(full.ToArray()[..keep]);
        var e = await Assert.ThrowsAsync<TtrpcProtocolException>(() => TtrpcFraming.ReadAsync(truncated, CancellationToken.None));
        Assert.Contains("ended inside", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_calls_a_server_method_and_gets_its_answer_and_statuses()
    {
        using var dir = TempDirectory.Create("vessel-ttrpc-", "/tmp");
        string socket = dir.Combine("t.sock");
        await using (var server = new TtrpcServer(socket))
        {
            var release = new TaskCompletionSource();
            server.Register("containerd.task.v2.Task", "State", StateRequest.Parser, (req, ct) =>
                Task.FromResult<IMessage>(new StateResponse { Id = req.Id, ExecId = req.ExecId, Pid = 42 }));
            server.Register("containerd.task.v2.Task", "Wait", WaitRequest.Parser, async (req, ct) =>
            {
                await release.Task.WaitAsync(ct);
                return new WaitResponse { ExitStatus = 3 };
            });
            server.Register("containerd.task.v2.Task", "Kill", KillRequest.Parser, (req, ct) =>
                throw new TtrpcStatusException(StatusCode.NotFound, $"process {req.ExecId} not found"));
            server.Start();

            await using TtrpcClient client = await TtrpcClient.ConnectAsync("unix://" + socket, CancellationToken.None);
            // A blocked call does not hold up the others on the same connection.
            Task<WaitResponse> wait = client.CallAsync("containerd.task.v2.Task", "Wait", new WaitRequest { Id = "c" }, WaitResponse.Parser, CancellationToken.None);
            StateResponse state = await client.CallAsync("containerd.task.v2.Task", "State", new StateRequest { Id = "c", ExecId = "e1" }, StateResponse.Parser, CancellationToken.None);
            Assert.Equal(("c", "e1", 42u), (state.Id, state.ExecId, state.Pid));
            Assert.False(wait.IsCompleted);
            release.SetResult();
            Assert.Equal(3u, (await wait).ExitStatus);

            var notFound = await Assert.ThrowsAsync<TtrpcStatusException>(() => client.CallAsync("containerd.task.v2.Task", "Kill", new KillRequest { ExecId = "x" }, Empty.Parser, CancellationToken.None));
            Assert.Equal(StatusCode.NotFound, notFound.Code);
            Assert.Contains("process x not found", notFound.Message, StringComparison.Ordinal);
            var missing = await Assert.ThrowsAsync<TtrpcStatusException>(() => client.CallAsync("containerd.task.v2.Task", "Checkpoint", new Empty(), Empty.Parser, CancellationToken.None));
            Assert.Equal(StatusCode.Unimplemented, missing.Code);
        }
        Assert.False(File.Exists(socket), "the server left its socket file");
    }

    [Fact]
    public async Task A_server_closes_a_connection_that_sends_an_oversize_frame_and_keeps_serving_others()
    {
        using var dir = TempDirectory.Create("vessel-ttrpc-", "/tmp");
        string socket = dir.Combine("t.sock");
        await using var server = new TtrpcServer(socket);
        server.Register("s", "m", Empty.Parser, (_, _) => Task.FromResult<IMessage>(new Empty()));
        server.Start();
        using (var raw = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            await raw.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
            byte[] header = new byte[TtrpcFrameHeader.Size];
            BinaryPrimitives.WriteUInt32BigEndian(header, 0x7fff_ffff);
            header[7] = 1;
            header[8] = (byte)TtrpcMessageType.Request;
            await raw.SendAsync(header);
            byte[] buffer = new byte[16];
            int n = await raw.ReceiveAsync(buffer, System.Net.Sockets.SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(0, n); // closed, nothing answered
        }
        await using TtrpcClient client = await TtrpcClient.ConnectAsync(socket, CancellationToken.None);
        Assert.NotNull(await client.CallAsync("s", "m", new Empty(), Empty.Parser, CancellationToken.None));
    }

    [Fact]
    public void A_request_envelope_has_ttrpc_field_numbers()
    {
        // service=1, method=2, payload=3, timeout_nano=4 (ttrpc request.proto).
        byte[] bytes = new Request { Service = "s", Method = "m", Payload = ByteString.CopyFrom(9), TimeoutNano = 1 }.ToByteArray();
        Assert.Equal(new byte[] { 0x0a, 1, (byte)'s', 0x12, 1, (byte)'m', 0x1a, 1, 9, 0x20, 1 }, bytes);
    }
}
