namespace Vessel.Containerd.Ttrpc;

/// <summary>A peer broke the ttrpc framing (an oversize or truncated frame, a bad message): the connection is closed.</summary>
internal sealed class TtrpcProtocolException : IOException
{
    public TtrpcProtocolException(string message)
        : base(message)
    {
    }
}
