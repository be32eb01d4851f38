namespace Vessel.Client;

/// <summary>
/// Where the Vessel daemon listens: either its unix socket (<see cref="SocketPath"/>, the default
/// of <c>vessel serve</c>) or a TCP address (<see cref="BaseAddress"/>, with an <see cref="ApiKey"/>).
/// </summary>
public sealed class VesselClientOptions
{
    /// <summary>The daemon's unix socket, e.g. <c>/var/lib/vessel/vessel.sock</c>. Set this or <see cref="BaseAddress"/>.</summary>
    public string? SocketPath { get; init; }

    /// <summary>The daemon's HTTP address when it runs with <c>--listen</c>, e.g. <c>http://host:8080</c>.</summary>
    public Uri? BaseAddress { get; init; }

    /// <summary>The API key sent as <c>X-API-Key</c> (<c>vessel keys create</c>); required over TCP.</summary>
    public string? ApiKey { get; init; }

    /// <summary>
    /// How long a request that is not a stream may take (creating a sandbox, pausing it, a file
    /// listing); past it the call throws <see cref="TimeoutException"/>. Streams (command output,
    /// downloads, uploads) have no limit: cancel them with their token. Default 10 minutes.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(10);
}
