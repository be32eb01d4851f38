using Vessel.Agent.Protocol;

namespace Vessel.Tests.Agent;

public sealed class ProtocolTests
{
    [Fact]
    public void Frame_header_round_trips_and_rejects_oversize_and_reserved_bits()
    {
        byte[] buffer = new byte[FrameHeader.Size];
        new FrameHeader(5, MessageType.Stdout, 7).Write(buffer);
        Assert.Equal(new FrameHeader(5, MessageType.Stdout, 7), FrameHeader.Read(buffer));
        buffer[5] = 1;
        Assert.Throws<AgentProtocolException>(() => FrameHeader.Read(buffer));
        new FrameHeader(FrameHeader.MaxPayload + 1, MessageType.Stdout, 7).Write(buffer);
        Assert.Throws<AgentProtocolException>(() => FrameHeader.Read(buffer));
    }

    [Fact]
    public void Truncated_or_lying_payloads_are_rejected()
    {
        byte[] good = new ExecStartRequest("t", ["sh", "-c", "x"], ["A=1"], "/", "", true, 5).Encode();
        Assert.Equal(["sh", "-c", "x"], ExecStartRequest.Decode(good).Arguments);
        Assert.Throws<AgentProtocolException>(() => ExecStartRequest.Decode(good.AsSpan(0, good.Length - 1)));
        byte[] lyingCount = new PayloadWriter().String("t").U32(1_000_000).ToArray();
        Assert.Throws<AgentProtocolException>(() => ExecStartRequest.Decode(lyingCount));
        byte[] extra = [.. good, 0];
        Assert.Throws<AgentProtocolException>(() => ExecStartRequest.Decode(extra));
    }

    [Fact]
    public void A_terminal_exec_round_trips_and_a_size_beyond_65535_cells_or_a_missing_size_is_rejected()
    {
        var request = new ExecTerminalRequest("t", ["sh"], ["TERM=xterm"], "/root", "0:0", 0, string.Empty, new TerminalSize(24, 80));
        ExecTerminalRequest back = ExecTerminalRequest.Decode(request.Encode());
        Assert.Equal(new TerminalSize(24, 80), back.Size);
        Assert.Equal(["sh"], back.Arguments);
        Assert.True(back.ToExecStart().Stdin);
        Assert.True(MessageTypes.IsRequest(MessageType.ExecTerminal));
        Assert.False(MessageTypes.IsRequest(MessageType.Resize));

        Assert.Equal(new TerminalSize(50, 200), TerminalSize.Decode(new TerminalSize(50, 200).Encode()));
        Assert.Throws<AgentProtocolException>(() => TerminalSize.Decode(new PayloadWriter().U32(70_000).U32(80).ToArray()));
        byte[] encoded = request.Encode();
        Assert.Throws<AgentProtocolException>(() => ExecTerminalRequest.Decode(encoded.AsSpan(0, encoded.Length - 8)));
    }

    [Fact(Timeout = 30_000)]
    public async Task Streams_are_flow_controlled_and_a_stalled_stream_does_not_block_another()
    {
        // A connected pair of unix sockets: the agent's end and the host's.
        using TempDirectory dir = TempDirectory.Create("vessel-mux-test-");
        var endpoint = new UnixDomainSocketEndPoint(dir.Combine("mux.sock"));
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(endpoint);
        listener.Listen(1);
        using var hostSocket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await hostSocket.ConnectAsync(endpoint);
        using Socket agentSocket = await listener.AcceptAsync();
        var accepted = new List<MuxStream>();
        var gotSecond = new TaskCompletionSource<Frame>();
        await using var agent = new MuxConnection(new NetworkStream(agentSocket), (s, first) =>
        {
            lock (accepted)
            {
                accepted.Add(s);
            }
            if (first.Type == MessageType.Health)
            {
                gotSecond.TrySetResult(first);
            }
            return Task.Delay(Timeout.Infinite);
        });
        await using var host = new MuxConnection(new NetworkStream(hostSocket));
        agent.Start();
        host.Start();

        MuxStream stalled = host.OpenStream();
        await stalled.SendAsync(MessageType.FileWrite, [0, 0, 0, 0], CancellationToken.None);
        // Fill the window of a stream nobody reads: the sender must stop at 1 MiB, not buffer more.
        Task fill = stalled.SendDataAsync(MessageType.FileData, new byte[3 << 20], CancellationToken.None);
        await Task.Delay(300);
        Assert.False(fill.IsCompleted);

        MuxStream other = host.OpenStream();
        await other.SendAsync(MessageType.Health, [0, 0, 0, 0], CancellationToken.None);
        Frame f = await gotSecond.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(MessageType.Health, f.Type);
    }
}
