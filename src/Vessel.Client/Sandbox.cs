using System.Net.Http.Json;
using Vessel.Client.Wire;

namespace Vessel.Client;

/// <summary>
/// A sandbox in the daemon: run commands in it (<see cref="Commands"/>), move files
/// (<see cref="Files"/>), pause, resume, extend its timeout and kill it. The handle holds no
/// resources: the sandbox lives until it is killed or its timeout passes, whatever happens to
/// this object.
/// </summary>
public sealed class Sandbox
{
    private readonly SandboxRoute _sandbox;

    internal Sandbox(ApiTransport transport, SandboxInfo info)
    {
        Info = info;
        _sandbox = SandboxRoute.Of(transport, info.SandboxId);
        Commands = new CommandsClient(_sandbox);
        Files = new FilesClient(_sandbox);
    }

    /// <summary>The sandbox's id, to <see cref="SandboxesClient.ConnectAsync"/> to it later.</summary>
    public string SandboxId => Info.SandboxId;

    /// <summary>The state last seen (after create, pause, resume or <see cref="RefreshAsync"/>).</summary>
    public SandboxState State => Info.State;

    /// <summary>What the daemon said about the sandbox the last time this handle asked.</summary>
    public SandboxInfo Info { get; private set; }

    /// <summary>Run commands in the sandbox.</summary>
    public CommandsClient Commands { get; }

    /// <summary>Read and write the sandbox's files.</summary>
    public FilesClient Files { get; }

    /// <summary>Asks the daemon for the sandbox's current state and end time.</summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The fresh description (also in <see cref="Info"/>).</returns>
    /// <exception cref="SandboxNotFoundException">The sandbox is gone (killed or timed out).</exception>
    public async Task<SandboxInfo> RefreshAsync(CancellationToken cancellationToken = default)
    {
        Info = await SandboxesClient.GetInfoCoreAsync(_sandbox.Transport, SandboxId, cancellationToken);
        return Info;
    }

    /// <summary>
    /// Pauses the sandbox: a snapshot of its memory, devices and disk; its VM process exits and its
    /// memory is freed. Processes and files come back on <see cref="ResumeAsync"/>.
    /// </summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the sandbox is paused.</returns>
    /// <exception cref="VesselApiException">409 when it is not running.</exception>
    public Task PauseAsync(CancellationToken cancellationToken = default) => TransitionAsync("pause", SandboxState.Paused, cancellationToken);

    /// <summary>Resumes a paused sandbox with its processes and files as they were.</summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the sandbox runs again.</returns>
    /// <exception cref="VesselApiException">409 when it is not paused.</exception>
    public Task ResumeAsync(CancellationToken cancellationToken = default) => TransitionAsync("resume", SandboxState.Running, cancellationToken);

    /// <summary>Restarts the sandbox's clock: it now ends <paramref name="timeout"/> from now.</summary>
    /// <param name="timeout">Between 1 second and 24 hours.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the daemon took the new timeout (<see cref="Info"/> has the new end).</returns>
    public async Task SetTimeoutAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var body = new TimeoutRequest { TimeoutSeconds = SandboxesClient.Seconds(timeout, nameof(timeout)) };
        var call = new ApiCall($"set the timeout of sandbox {SandboxId}", SandboxId);
        SandboxWire wire = await _sandbox.Transport.SendAsync(HttpMethod.Post, _sandbox.Path + "/timeout", JsonBody.Create(body, WireJson.Default.TimeoutRequest),
            WireJson.Default.SandboxWire, call, cancellationToken);
        Info = SandboxesClient.ToInfo(wire, call, _sandbox.Transport);
    }

    /// <summary>
    /// Makes <paramref name="port"/>, a TCP port a program in the sandbox listens on, reachable
    /// from the daemon's machine, and returns where: <c>127.0.0.1:HOSTPORT</c> (HTTP and raw TCP
    /// alike). Asking again for the same port gives the same address; it stays valid across
    /// pause and resume.
    /// </summary>
    /// <param name="port">The guest port, 1-65535.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>HOST:PORT on the daemon's machine.</returns>
    /// <exception cref="VesselApiException">409 when the sandbox is paused.</exception>
    public async Task<string> GetHostAsync(int port, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        var call = new ApiCall($"forward port {port} of sandbox {SandboxId}", SandboxId);
        PortWire wire = await _sandbox.Transport.SendAsync(HttpMethod.Post, $"{_sandbox.Path}/ports/{port.ToString(System.Globalization.CultureInfo.InvariantCulture)}", null,
            WireJson.Default.PortWire, call, cancellationToken);
        return wire.Host ?? throw _sandbox.Transport.Malformed(call, "a port without a host");
    }

    /// <summary>Kills the sandbox: its VM stops and its disk and snapshot are deleted.</summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when the sandbox is gone.</returns>
    /// <exception cref="SandboxNotFoundException">It was already gone.</exception>
    public Task KillAsync(CancellationToken cancellationToken = default)
        => _sandbox.Transport.SendAsync(HttpMethod.Delete, _sandbox.Path, null, new ApiCall($"kill sandbox {SandboxId}", SandboxId), cancellationToken);

    /// <summary>The sandbox's id.</summary>
    /// <returns><see cref="SandboxId"/>.</returns>
    public override string ToString() => SandboxId;

    private async Task TransitionAsync(string verb, SandboxState after, CancellationToken cancellationToken)
    {
        var call = new ApiCall($"{verb} sandbox {SandboxId}", SandboxId);
        using HttpResponseMessage response = await _sandbox.Transport.OpenAsync(HttpMethod.Post, $"{_sandbox.Path}/{verb}", null, call, cancellationToken);
        // The daemon may answer with the sandbox (200) or nothing (204); either way it is in the new state now.
        SandboxWire? wire = null;
        if (response.Content.Headers.ContentType?.MediaType == "application/json")
        {
            try
            {
                wire = await response.Content.ReadFromJsonAsync(WireJson.Default.SandboxWire, cancellationToken);
            }
            catch (IOException e)
            {
                throw _sandbox.Transport.Broken(call, e);
            }
        }
        Info = wire?.SandboxId is not null ? SandboxesClient.ToInfo(wire, call, _sandbox.Transport) : Info with { State = after };
    }
}
