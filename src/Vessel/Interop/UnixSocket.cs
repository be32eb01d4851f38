using System.Net.Sockets;

namespace Vessel.Interop;

/// <summary>
/// Dials a unix socket: the one body behind every client connection Vessel makes to one
/// (containerd's gRPC, ttrpc, QMP, the agent's socket) and behind Vessel.Client's connection to
/// the daemon (that assembly references none of Vessel's, so it compiles this file too).
/// </summary>
internal static class UnixSocket
{
    /// <summary>A socket connected to <paramref name="path"/>; a failed or cancelled connect leaves nothing open.</summary>
    public static async Task<Socket> ConnectAsync(string path, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Connects to <paramref name="path"/>, trying again every <paramref name="retryDelay"/> while
    /// nothing accepts there yet (a process that is starting creates it); only cancellation ends the wait.
    /// </summary>
    public static async Task<Socket> ConnectWhenListeningAsync(string path, TimeSpan retryDelay, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                return await ConnectAsync(path, cancellationToken);
            }
            catch (SocketException)
            {
                await Task.Delay(retryDelay, cancellationToken);
            }
        }
    }

    /// <summary>A stream that owns a new connection to <paramref name="path"/>: what an HTTP handler's <c>ConnectCallback</c> returns.</summary>
    public static async ValueTask<Stream> ConnectStreamAsync(string path, CancellationToken cancellationToken)
        => new NetworkStream(await ConnectAsync(path, cancellationToken), ownsSocket: true);
}
