using System.Globalization;
using Microsoft.Extensions.Logging;
using Vessel.Sandboxes;
using Vessel.Vmm;

namespace Vessel.Service;

internal sealed partial class SandboxService
{
    private const int MaxPortsPerSandbox = 64;

    /// <summary>Beside a paused sandbox's snapshot: its network rules and forwards, so a later daemon resumes it with the same ones.</summary>
    private const string NetworkFile = "network.json";

    /// <summary>
    /// Makes a guest TCP port reachable from the host (docs/api.md, "ports"): slirp's
    /// <c>hostfwd</c> on 127.0.0.1, so HTTP and raw TCP both pass. The same guest port gets the
    /// same address again; after a pause and resume it is added again at the same host port.
    /// </summary>
    public async Task<PortInfo> ForwardPortAsync(string id, int port, CancellationToken cancellationToken)
    {
        if (port is < 1 or > 65535)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"port: {port} is not a TCP port (1-65535).");
        }
        ServiceSandbox sandbox = Find(id);
        using ServiceSandbox.Operation operation = sandbox.BeginOperation();
        lock (sandbox.Ports)
        {
            if (sandbox.Ports.TryGetValue(port, out int known))
            {
                return ToPortInfo(port, known);
            }
            if (sandbox.Ports.Count >= MaxPortsPerSandbox)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"Sandbox {id} already forwards {MaxPortsPerSandbox} ports.");
            }
        }
        int hostPort = await AddForwardAsync(sandbox.Live!, port, null, cancellationToken);
        lock (sandbox.Ports)
        {
            if (!sandbox.Ports.TryAdd(port, hostPort))
            {
                // A concurrent request for the same port won; its forward stands, this one is spare (and harmless).
                return ToPortInfo(port, sandbox.Ports[port]);
            }
        }
        Log.PortForwarded(_logger, id, port, hostPort);
        return ToPortInfo(port, hostPort);
    }

    /// <summary>The ports a sandbox forwards, by guest port.</summary>
    public IReadOnlyList<PortInfo> ListPorts(string id) =>
        [.. Find(id).Ports.OrderBy(p => p.Key).Select(p => ToPortInfo(p.Key, p.Value))];

    /// <summary>After a resume: the forwards again, each at its old host port when that is still free.</summary>
    private async Task RestorePortsAsync(ServiceSandbox sandbox, Sandbox live, CancellationToken cancellationToken)
    {
        foreach ((int guest, int host) in sandbox.Ports.ToArray())
        {
            int now = await AddForwardAsync(live, guest, host, cancellationToken);
            if (now != host)
            {
                sandbox.Ports[guest] = now;
                Log.PortMoved(_logger, sandbox.Id, guest, host, now);
            }
        }
    }

    /// <summary>Adds a forward at <paramref name="preferred"/> or, when that is taken or null, at a free port.</summary>
    private static async Task<int> AddForwardAsync(Sandbox live, int guestPort, int? preferred, CancellationToken cancellationToken)
    {
        if (preferred is { } wanted && await live.TryForwardPortAsync(guestPort, wanted, cancellationToken))
        {
            return wanted;
        }
        return (await live.ForwardPortAsync(guestPort, cancellationToken)).Port;
    }

    private static PortInfo ToPortInfo(int guestPort, int hostPort)
    {
        string host = "127.0.0.1:" + hostPort.ToString(CultureInfo.InvariantCulture);
        return new PortInfo(guestPort, host, "http://" + host);
    }

    /// <summary>A create request's network, checked (400 naming the rule) before any VM starts.</summary>
    private NetworkConfig ToNetwork(NetworkRequest? request)
    {
        if (request is null)
        {
            return _options.DefaultNetwork;
        }
        var config = _options.DefaultNetwork with
        {
            Outbound = request.Outbound is { } outbound ? NetworkConfig.ParseOutbound(outbound) : _options.DefaultNetwork.Outbound,
            Allow = [.. (request.Allow ?? []).Select(ParseRule)],
            Deny = [.. (request.Deny ?? []).Select(ParseRule)],
        };
        try
        {
            config.Validate();
        }
        catch (VesselException e) when (e.Reason == VesselErrorReason.Unsupported)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "network: " + e.Message, e);
        }
        return config;
    }

    private static NetworkRule ParseRule(string? text) => text is null
        ? throw new VesselException(VesselErrorReason.InvalidInput, "network: a rule is null; give CIDR or HOST:PORT strings.")
        : NetworkRule.Parse(text);

    /// <summary>Writes the rules and forwards of a sandbox being paused next to its snapshot.</summary>
    private static async Task SaveNetworkAsync(ServiceSandbox sandbox, string directory, CancellationToken cancellationToken)
    {
        var saved = new SavedNetwork(NetworkConfig.FormatOutbound(sandbox.Network.Outbound),
            [.. sandbox.Network.Allow.Select(r => r.ToString())], [.. sandbox.Network.Deny.Select(r => r.ToString())],
            sandbox.Ports.ToDictionary(p => p.Key, p => p.Value));
        await File.WriteAllTextAsync(Path.Combine(directory, NetworkFile), System.Text.Json.JsonSerializer.Serialize(saved), cancellationToken);
    }

    /// <summary>The network a paused sandbox was saved with (the daemon's default when it has no file: paused before networks were saved).</summary>
    private async Task<NetworkConfig> LoadNetworkAsync(string directory, IDictionary<int, int> ports, CancellationToken cancellationToken)
    {
        string path = Path.Combine(directory, NetworkFile);
        if (!File.Exists(path))
        {
            return _options.DefaultNetwork;
        }
        SavedNetwork saved;
        try
        {
            saved = System.Text.Json.JsonSerializer.Deserialize<SavedNetwork>(await File.ReadAllTextAsync(path, cancellationToken))
                ?? throw new System.Text.Json.JsonException("null");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{path} is unreadable ({e.Message}).", e);
        }
        foreach ((int guest, int host) in saved.Ports ?? [])
        {
            ports[guest] = host;
        }
        return NetworkConfig.Default with
        {
            Outbound = NetworkConfig.ParseOutbound(saved.Outbound),
            Allow = [.. (saved.Allow ?? []).Select(NetworkRule.Parse)],
            Deny = [.. (saved.Deny ?? []).Select(NetworkRule.Parse)],
        };
    }

    private sealed record SavedNetwork(string Outbound, List<string>? Allow, List<string>? Deny, Dictionary<int, int>? Ports);

    private static partial class Log
    {
        [LoggerMessage(7050, LogLevel.Information, "Sandbox {SandboxId}: guest port {GuestPort} is reachable at 127.0.0.1:{HostPort}")]
        public static partial void PortForwarded(ILogger logger, string sandboxId, int guestPort, int hostPort);

        [LoggerMessage(7051, LogLevel.Warning, "Sandbox {SandboxId}: host port {OldPort} of guest port {GuestPort} was taken while paused; it moved to {HostPort}")]
        public static partial void PortMoved(ILogger logger, string sandboxId, int guestPort, int oldPort, int hostPort);
    }
}
