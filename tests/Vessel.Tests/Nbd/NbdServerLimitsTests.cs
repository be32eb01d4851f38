using Vessel.Nbd;

namespace Vessel.Tests.Nbd;

/// <summary>
/// What one local client can do to others (issue 18, item 5): per-peer limits, a short
/// handshake timeout, the socket's permissions, and addresses. The other peer is the real
/// <c>nbdinfo</c>: another process, as another client would be.
/// </summary>
public sealed class NbdServerLimitsTests : IAsyncLifetime
{
    private const int Size = 1 << 20;
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-nbd-limits-");
    private readonly FlatFileDevice _device;
    private readonly List<RawNbdClient> _clients = [];
    private NbdServer? _server;

    public NbdServerLimitsTests()
    {
        File.WriteAllBytes(_dir.Combine("disk.raw"), new byte[Size]);
        _device = FlatFileDevice.Open(_dir.Combine("disk.raw"), readOnly: true);
    }

    private string SocketPath => _dir.Combine("nbd.sock");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (RawNbdClient c in _clients)
        {
            c.Dispose();
        }
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
        _device.Dispose();
        _dir.Dispose();
    }

    private async Task<NbdServer> StartAsync(NbdServerOptions options)
    {
        _server = new NbdServer(options);
        _server.AddExport("disk", _device, readOnly: true);
        await _server.StartAsync(CancellationToken.None);
        return _server;
    }

    private async Task<RawNbdClient> ConnectAsync()
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                RawNbdClient c = await RawNbdClient.ConnectAsync(SocketPath);
                _clients.Add(c);
                return c;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.TryAgain or SocketError.WouldBlock && attempt < 500)
            {
                await Task.Delay(10); // the listen backlog is full for a moment: the server is still accepting the flood
            }
        }
    }

    private async Task<bool> OtherProcessCanReadAsync()
    {
        ProcessResult r = await ExternalProcess.RunAsync("nbdinfo", ["--size", $"nbd+unix:///disk?socket={SocketPath}"], CancellationToken.None,
            timeout: TimeSpan.FromSeconds(20));
        return r.ExitCode == 0 && r.StandardOutput.Trim() == Size.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void The_default_handshake_timeout_is_seconds_not_half_a_minute()
    {
        var options = new NbdServerOptions { UnixSocketPath = "x" };
        Assert.True(options.HandshakeTimeout <= TimeSpan.FromSeconds(5), options.HandshakeTimeout.ToString());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, options.UnixSocketMode);
    }

    [RequiresFact("nbdinfo", Timeout = 60_000)]
    public async Task Half_open_handshakes_of_one_peer_are_capped_and_another_peer_is_still_served()
    {
        NbdServer server = await StartAsync(new NbdServerOptions { UnixSocketPath = SocketPath });
        int cap = server.Options.MaxHandshakesPerPeer;
        var held = new List<RawNbdClient>();
        for (int i = 0; i < 300; i++) // the probe's flood: 300 connections that never negotiate
        {
            held.Add(await ConnectAsync());
        }
        // The first `cap` get a greeting; the rest are closed at once.
        for (int i = 0; i < cap; i++)
        {
            Assert.Equal(18, (await held[i].ReadAsync(18)).Length);
        }
        for (int i = cap; i < held.Count; i += 37)
        {
            Assert.True(await held[i].IsClosedByServerAsync(TimeSpan.FromSeconds(5)), $"connection {i} was kept");
        }
        Assert.True(await OtherProcessCanReadAsync(), "another process was locked out");

        // The held ones are dropped after the (short) handshake timeout, and the peer may connect again.
        var clock = Stopwatch.StartNew();
        Assert.True(await held[0].IsClosedByServerAsync(server.Options.HandshakeTimeout + TimeSpan.FromSeconds(5)));
        Assert.True(clock.Elapsed < server.Options.HandshakeTimeout + TimeSpan.FromSeconds(5));
        RawNbdClient again = await ConnectAsync();
        Assert.Equal(NbdOptionReply.Ack, (await again.GoAsync("disk")).Reply);
    }

    [RequiresFact("nbdinfo", Timeout = 60_000)]
    public async Task Connections_of_one_peer_are_capped_and_another_peer_is_still_served()
    {
        await StartAsync(new NbdServerOptions { UnixSocketPath = SocketPath, MaxConnectionsPerPeer = 4 });
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(NbdOptionReply.Ack, (await (await ConnectAsync()).GoAsync("disk")).Reply);
        }
        RawNbdClient fifth = await ConnectAsync();
        Assert.True(await fifth.IsClosedByServerAsync(TimeSpan.FromSeconds(5)));
        Assert.True(await OtherProcessCanReadAsync(), "another process was locked out");

        // A slot frees when a connection ends.
        _clients[0].Dispose();
        await WaitForAsync(() => _server!.ConnectionCount == 3);
        Assert.Equal(NbdOptionReply.Ack, (await (await ConnectAsync()).GoAsync("disk")).Reply);
    }

    [Fact(Timeout = 20_000)]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task The_unix_socket_is_created_0600_unless_widened()
    {
        await StartAsync(new NbdServerOptions { UnixSocketPath = SocketPath });
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(SocketPath));
        await _server!.DisposeAsync();
        _server = null;

        UnixFileMode group = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
        await StartAsync(new NbdServerOptions { UnixSocketPath = SocketPath, UnixSocketMode = group });
        Assert.Equal(group, File.GetUnixFileMode(SocketPath));
    }

    [Fact(Timeout = 20_000)]
    public async Task An_ipv4_mapped_loopback_address_is_served_as_ipv4()
    {
        await StartAsync(new NbdServerOptions { TcpEndPoint = IPEndPoint.Parse("[::ffff:127.0.0.1]:0") });
        Assert.Equal(IPAddress.Loopback, _server!.TcpEndPoint!.Address);
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(_server.TcpEndPoint);
        Assert.True(s.Connected);
    }

    [Fact(Timeout = 20_000)]
    public async Task A_mapped_address_that_is_not_loopback_is_refused()
    {
        _server = new NbdServer(new NbdServerOptions { TcpEndPoint = IPEndPoint.Parse("[::ffff:10.0.0.1]:10899") });
        var e = await Assert.ThrowsAsync<VesselException>(() => _server.StartAsync(CancellationToken.None));
        Assert.Contains("not a loopback address", e.Message, StringComparison.Ordinal);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!condition())
        {
            await Task.Delay(20, cts.Token);
        }
    }
}
