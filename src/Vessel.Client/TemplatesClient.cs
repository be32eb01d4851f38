using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using Vessel.Client.Wire;

namespace Vessel.Client;

/// <summary>The daemon's templates: <see cref="VesselClient.Templates"/>.</summary>
public sealed class TemplatesClient
{
    private readonly ApiTransport _transport;

    internal TemplatesClient(ApiTransport transport)
    {
        _transport = transport;
    }

    /// <summary>Starts a template build in the daemon from a spec (docs/formats/template-spec.md) and returns its build id.</summary>
    /// <param name="specJson">The template spec, as JSON.</param>
    /// <param name="cancellationToken">Cancels the request (a started build goes on).</param>
    /// <returns>The build id, for <see cref="GetBuildAsync"/>, <see cref="ReadBuildLogAsync"/> and <see cref="WaitForBuildAsync"/>.</returns>
    /// <exception cref="VesselApiException">400 with what is wrong in the spec.</exception>
    public async Task<string> BuildAsync(string specJson, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(specJson);
        var content = new StringContent(specJson, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var call = new ApiCall("start a template build");
        BuildStarted started = await _transport.SendAsync(HttpMethod.Post, "templates", content, WireJson.Default.BuildStarted, call, cancellationToken);
        return started.BuildId ?? throw _transport.Malformed(call, "an answer without a buildId");
    }

    /// <summary>Where a build stands.</summary>
    /// <param name="buildId">The id from <see cref="BuildAsync"/>.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The build's status.</returns>
    public async Task<BuildInfo> GetBuildAsync(string buildId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(buildId);
        var call = new ApiCall($"get build {buildId}");
        BuildWire w = await _transport.SendAsync(HttpMethod.Get, "builds/" + Uri.EscapeDataString(buildId), null, WireJson.Default.BuildWire, call, cancellationToken);
        return new BuildInfo
        {
            BuildId = w.BuildId ?? buildId,
            Template = w.Template,
            Status = w.Status?.ToLowerInvariant() switch
            {
                "building" => BuildStatus.Building,
                "succeeded" => BuildStatus.Succeeded,
                "failed" => BuildStatus.Failed,
                _ => BuildStatus.Unknown,
            },
            Error = w.Error,
            StartedAt = w.StartedAt,
            FinishedAt = w.FinishedAt,
        };
    }

    /// <summary>Streams a build's log, line by line, while it runs; ends when the build ends.</summary>
    /// <param name="buildId">The id from <see cref="BuildAsync"/>.</param>
    /// <param name="cancellationToken">Stops reading (the build goes on).</param>
    /// <returns>The log lines.</returns>
    public async IAsyncEnumerable<string> ReadBuildLogAsync(string buildId, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(buildId);
        var call = new ApiCall($"read the log of build {buildId}");
        (HttpResponseMessage response, Stream body) = await _transport.OpenStreamAsync(HttpMethod.Get, $"builds/{Uri.EscapeDataString(buildId)}/log", null, call, cancellationToken);
        using (response)
        using (var reader = new StreamReader(body, Encoding.UTF8))
        {
            while (await ReadLineAsync(reader, call, cancellationToken) is string line)
            {
                yield return line;
            }
        }
    }

    /// <summary>Waits for a build to end, following its log, and returns its final status.</summary>
    /// <param name="buildId">The id from <see cref="BuildAsync"/>.</param>
    /// <param name="onLog">Called with each log line, or null.</param>
    /// <param name="cancellationToken">Stops waiting (the build goes on).</param>
    /// <returns>The finished build: <see cref="BuildStatus.Succeeded"/> or <see cref="BuildStatus.Failed"/>.</returns>
    public async Task<BuildInfo> WaitForBuildAsync(string buildId, Action<string>? onLog = null, CancellationToken cancellationToken = default)
    {
        await foreach (string line in ReadBuildLogAsync(buildId, cancellationToken))
        {
            onLog?.Invoke(line);
        }
        // The log ends with the build; poll briefly in case the status is written just after.
        while (true)
        {
            BuildInfo build = await GetBuildAsync(buildId, cancellationToken);
            if (build.Status != BuildStatus.Building)
            {
                return build;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
        }
    }

    /// <summary>Lists the templates.</summary>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The templates.</returns>
    public async Task<IReadOnlyList<TemplateInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var call = new ApiCall("list templates");
        List<TemplateWire> wires = await _transport.SendAsync(HttpMethod.Get, "templates", null, WireJson.Default.ListTemplateWire, call, cancellationToken);
        return wires.Select(w => new TemplateInfo
        {
            Name = w.Name ?? throw _transport.Malformed(call, "a template without a name"),
            BuiltAt = w.BuiltAt,
            DiskSizeBytes = w.DiskSizeBytes,
            HasSnapshot = w.HasSnapshot ?? false,
            Cpu = w.Cpu,
            MemoryMb = w.MemoryMb,
            FinalHash = w.FinalHash,
        }).ToList();
    }

    /// <summary>Deletes a template (sandboxes created from it keep running).</summary>
    /// <param name="name">The template's name.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when it is gone.</returns>
    public Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        return _transport.SendAsync(HttpMethod.Delete, "templates/" + Uri.EscapeDataString(name), null, new ApiCall($"delete template {name}"), cancellationToken);
    }

    private async Task<string?> ReadLineAsync(StreamReader reader, ApiCall call, CancellationToken cancellationToken)
    {
        try
        {
            return await reader.ReadLineAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            throw _transport.Broken(call, e);
        }
    }
}
