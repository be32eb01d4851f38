namespace Vessel.Client;

/// <summary>
/// A client of the Vessel daemon (<c>vessel serve</c>). One instance holds a pool of connections
/// and is safe to use from many threads; dispose it when done.
/// </summary>
/// <example>
/// <code>
/// await using var client = new VesselClient(new VesselClientOptions { SocketPath = "/var/lib/vessel/vessel.sock" });
/// var sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions { Template = "web" });
/// CommandResult r = await sandbox.Commands.RunAsync("sh", ["-c", "echo hi"]);
/// await sandbox.KillAsync();
/// </code>
/// </example>
public sealed class VesselClient : IAsyncDisposable, IDisposable
{
    private readonly ApiTransport _transport;

    /// <summary>Creates a client for the daemon that <paramref name="options"/> names.</summary>
    /// <param name="options">The daemon's unix socket, or its address and API key.</param>
    /// <exception cref="ArgumentException">Neither or both of a socket and an address are set.</exception>
    public VesselClient(VesselClientOptions options)
    {
        _transport = new ApiTransport(options);
        Sandboxes = new SandboxesClient(_transport);
        Templates = new TemplatesClient(_transport);
    }

    /// <summary>Create, list and connect to sandboxes.</summary>
    public SandboxesClient Sandboxes { get; }

    /// <summary>Build, list and delete templates.</summary>
    public TemplatesClient Templates { get; }

    /// <summary>Where the daemon is: <c>unix:/path</c> or <c>http://host:port</c>.</summary>
    public string Endpoint => _transport.Endpoint;

    /// <summary>Closes the client's connections. Sandboxes keep running in the daemon.</summary>
    public void Dispose() => _transport.Dispose();

    /// <summary>Closes the client's connections. Sandboxes keep running in the daemon.</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        _transport.Dispose();
        return ValueTask.CompletedTask;
    }
}
