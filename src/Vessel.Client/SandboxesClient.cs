using System.Text;
using Vessel.Client.Wire;

namespace Vessel.Client;

/// <summary>The daemon's sandboxes: <see cref="VesselClient.Sandboxes"/>.</summary>
public sealed class SandboxesClient
{
    private readonly ApiTransport _transport;

    internal SandboxesClient(ApiTransport transport)
    {
        _transport = transport;
    }

    /// <summary>Creates a sandbox from a template (resumed from its snapshot) and returns it running.</summary>
    /// <param name="options">The template, timeout, metadata and environment.</param>
    /// <param name="cancellationToken">Cancels the request (the daemon may still create the sandbox; its timeout ends it).</param>
    /// <returns>The running sandbox.</returns>
    /// <exception cref="VesselApiException">Unknown template (404), bad options (400).</exception>
    /// <exception cref="VesselConnectionException">The daemon is not reachable.</exception>
    public async Task<Sandbox> CreateAsync(SandboxCreateOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Template, nameof(options));
        var body = new CreateSandboxRequest
        {
            Template = options.Template,
            TimeoutSeconds = options.Timeout is TimeSpan t ? Seconds(t, nameof(options)) : null,
            AutoPause = options.AutoPause ? true : null,
            Metadata = options.Metadata,
            Env = options.Env,
        };
        var call = new ApiCall($"create a sandbox from template '{options.Template}'");
        SandboxWire wire = await _transport.SendAsync(HttpMethod.Post, "sandboxes",
            JsonBody.Create(body, WireJson.Default.CreateSandboxRequest), WireJson.Default.SandboxWire, call, cancellationToken);
        return new Sandbox(_transport, ToInfo(wire, call));
    }

    /// <summary>
    /// Creates a sandbox from a request body as docs/api.md writes it: a template's, or a pod's
    /// (<c>{"containers": [...], "rootfs": "block", ...}</c>), e.g. the contents of a pod file.
    /// </summary>
    /// <param name="requestJson">The JSON object to post to <c>/sandboxes</c>.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The running sandbox.</returns>
    /// <exception cref="ArgumentException">The text is not a JSON object.</exception>
    /// <exception cref="VesselApiException">Bad fields (400, naming the field), an unknown template or image (404).</exception>
    public async Task<Sandbox> CreateFromJsonAsync(string requestJson, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requestJson);
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(requestJson);
            if (document.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object)
            {
                throw new ArgumentException("A sandbox request is a JSON object.", nameof(requestJson));
            }
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ArgumentException("A sandbox request must be valid JSON: " + e.Message, nameof(requestJson), e);
        }
        var call = new ApiCall("create a sandbox");
        using var content = new StringContent(requestJson, Encoding.UTF8, "application/json");
        SandboxWire wire = await _transport.SendAsync(HttpMethod.Post, "sandboxes", content, WireJson.Default.SandboxWire, call, cancellationToken);
        return new Sandbox(_transport, ToInfo(wire, call));
    }

    /// <summary>Lists the daemon's sandboxes that match <paramref name="query"/>.</summary>
    /// <param name="query">A filter by state and metadata; null lists all.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The sandboxes, as the daemon orders them.</returns>
    public async Task<IReadOnlyList<SandboxInfo>> ListAsync(SandboxQuery? query = null, CancellationToken cancellationToken = default)
    {
        var path = new StringBuilder("sandboxes");
        char separator = '?';
        if (query?.State is SandboxState state)
        {
            path.Append(separator).Append("state=").Append(StateName(state));
            separator = '&';
        }
        foreach ((string key, string value) in query?.Metadata ?? new Dictionary<string, string>())
        {
            path.Append(separator).Append("metadata.").Append(Uri.EscapeDataString(key)).Append('=').Append(Uri.EscapeDataString(value));
            separator = '&';
        }
        var call = new ApiCall("list sandboxes");
        List<SandboxWire> wires = await _transport.SendAsync(HttpMethod.Get, path.ToString(), null, WireJson.Default.ListSandboxWire, call, cancellationToken);
        return wires.Select(w => ToInfo(w, call)).ToList();
    }

    /// <summary>Describes one sandbox.</summary>
    /// <param name="sandboxId">Its id.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>What the daemon says about it now.</returns>
    /// <exception cref="SandboxNotFoundException">No such sandbox.</exception>
    public Task<SandboxInfo> GetInfoAsync(string sandboxId, CancellationToken cancellationToken = default)
        => GetInfoCoreAsync(_transport, sandboxId, cancellationToken);

    /// <summary>A handle on an existing sandbox in whatever state it is (<see cref="ConnectAsync"/> also resumes a paused one).</summary>
    /// <param name="sandboxId">Its id.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The sandbox.</returns>
    /// <exception cref="SandboxNotFoundException">No such sandbox.</exception>
    public async Task<Sandbox> GetAsync(string sandboxId, CancellationToken cancellationToken = default)
        => new(_transport, await GetInfoCoreAsync(_transport, sandboxId, cancellationToken));

    /// <summary>
    /// Returns a handle on an existing sandbox, resuming it first when it is paused, so that it is
    /// running when this returns.
    /// </summary>
    /// <param name="sandboxId">Its id (from <see cref="Sandbox.SandboxId"/> or <see cref="ListAsync"/>).</param>
    /// <param name="cancellationToken">Cancels the requests.</param>
    /// <returns>The running sandbox.</returns>
    /// <exception cref="SandboxNotFoundException">No such sandbox.</exception>
    public async Task<Sandbox> ConnectAsync(string sandboxId, CancellationToken cancellationToken = default)
    {
        Sandbox sandbox = await GetAsync(sandboxId, cancellationToken);
        if (sandbox.State == SandboxState.Paused)
        {
            await sandbox.ResumeAsync(cancellationToken);
        }
        return sandbox;
    }

    internal static async Task<SandboxInfo> GetInfoCoreAsync(ApiTransport transport, string sandboxId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(sandboxId);
        var call = new ApiCall($"get sandbox {sandboxId}", sandboxId);
        SandboxWire wire = await transport.SendAsync(HttpMethod.Get, "sandboxes/" + Uri.EscapeDataString(sandboxId), null, WireJson.Default.SandboxWire, call, cancellationToken);
        return ToInfo(wire, call, transport);
    }

    internal SandboxInfo ToInfo(SandboxWire wire, ApiCall call) => ToInfo(wire, call, _transport);

    internal static SandboxInfo ToInfo(SandboxWire wire, ApiCall call, ApiTransport transport) => new()
    {
        SandboxId = wire.SandboxId ?? throw transport.Malformed(call, "a sandbox without a sandboxId"),
        Template = wire.Template,
        State = ParseState(wire.State),
        StartedAt = wire.StartedAt,
        EndAt = wire.EndAt,
        Metadata = wire.Metadata ?? [],
    };

    internal static int Seconds(TimeSpan timeout, string name)
    {
        if (timeout <= TimeSpan.Zero || timeout > TimeSpan.FromHours(24))
        {
            throw new ArgumentOutOfRangeException(name, timeout, "A sandbox timeout must be between 1 second and 24 hours.");
        }
        return (int)Math.Ceiling(timeout.TotalSeconds);
    }

    internal static SandboxState ParseState(string? state) => state?.ToLowerInvariant() switch
    {
        "running" => SandboxState.Running,
        "paused" => SandboxState.Paused,
        _ => SandboxState.Unknown,
    };

    private static string StateName(SandboxState state) => state switch
    {
        SandboxState.Running => "running",
        SandboxState.Paused => "paused",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "Filter by Running or Paused."),
    };
}
