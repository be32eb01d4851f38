using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Vessel.Vmm;

/// <summary>A network rule: a CIDR (<c>10.0.0.0/8</c>) or a host and port (<c>127.0.0.1:8080</c>, <c>localhost:8080</c>).</summary>
public sealed record NetworkRule(string Host, int? Port, int? PrefixLength)
{
    public bool IsHostLoopback => Host is "localhost" or NetworkConfig.HostName
        || (IPAddress.TryParse(Host, out IPAddress? address) && IPAddress.IsLoopback(address));

    public static NetworkRule Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0)
        {
            if (!IPAddress.TryParse(text[..slash], out IPAddress? network) || network.AddressFamily != AddressFamily.InterNetwork
                || !int.TryParse(text[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int prefix) || prefix > 32)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"network rule '{text}' is not an IPv4 CIDR such as 10.0.0.0/8");
            }
            return new NetworkRule(network.ToString(), null, prefix);
        }
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"network rule '{text}' is neither HOST:PORT (port 1-65535) nor a CIDR");
        }
        string host = text[..colon];
        if (!IPAddress.TryParse(host, out _) && (host.Length > 253 || !host.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.')))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"network rule '{text}': '{host}' is not an IPv4 address or a host name");
        }
        return new NetworkRule(host, port, null);
    }

    /// <summary>True when the first <paramref name="prefix"/> bits of two IPv4 addresses agree.</summary>
    public static bool PrefixMatches(IPAddress network, IPAddress address, int prefix)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(address);
        uint mask = prefix == 0 ? 0 : uint.MaxValue << (32 - prefix);
        uint a = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(network.GetAddressBytes());
        uint b = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(address.GetAddressBytes());
        return (a & mask) == (b & mask);
    }

    public override string ToString() => Port is { } p
        ? $"{Host}:{p.ToString(CultureInfo.InvariantCulture)}"
        : $"{Host}/{PrefixLength!.Value.ToString(CultureInfo.InvariantCulture)}";
}
