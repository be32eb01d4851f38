using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Vessel.Client.Wire;
using Vessel.Interop;

namespace Vessel.Client;

/// <summary>
/// The HTTP side of the client: one <see cref="HttpClient"/> over the daemon's unix socket or
/// TCP, and the mapping of every failure to one typed exception with a message that says what
/// was being done and what the daemon (or the connection) said.
/// </summary>
internal sealed class ApiTransport : IDisposable
{
    private const int MaxErrorBody = 64 * 1024; // a problem document is small; never read an unbounded error body
    private static readonly Uri s_socketBase = new("http://localhost/");
    private readonly HttpClient _http;
    private readonly TimeSpan _requestTimeout;

    public ApiTransport(VesselClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if ((options.SocketPath is null) == (options.BaseAddress is null))
        {
            throw new ArgumentException("Set exactly one of VesselClientOptions.SocketPath (the daemon's unix socket) and BaseAddress (http://host:port).", nameof(options));
        }
        if (options.RequestTimeout <= TimeSpan.Zero && options.RequestTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "VesselClientOptions.RequestTimeout must be positive.");
        }
        _requestTimeout = options.RequestTimeout;
        var handler = new SocketsHttpHandler
        {
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            // The daemon is local or named by its address: never through an HTTP(S)_PROXY of the
            // environment (which would also cost a proxy lookup per connection).
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
        };
        Uri baseAddress;
        if (options.SocketPath is string socketPath)
        {
            handler.ConnectCallback = (_, ct) => UnixSocket.ConnectStreamAsync(socketPath, ct);
            baseAddress = s_socketBase;
            Endpoint = "unix:" + socketPath;
        }
        else
        {
            baseAddress = options.BaseAddress!;
            if (baseAddress.Scheme is not ("http" or "https"))
            {
                throw new ArgumentException($"VesselClientOptions.BaseAddress '{baseAddress}' must be an http:// or https:// address.", nameof(options));
            }
            Endpoint = baseAddress.GetLeftPart(UriPartial.Authority);
        }
        _http = new HttpClient(handler, disposeHandler: true)
        {
            BaseAddress = baseAddress,
            // Streams have no limit; requests get theirs from a linked token (SendAsync), so that
            // a timeout is reported as ours and not as a cancellation.
            Timeout = Timeout.InfiniteTimeSpan,
        };
        if (options.ApiKey is string key)
        {
            _http.DefaultRequestHeaders.Add("X-API-Key", key);
        }
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("Vessel.Client", typeof(ApiTransport).Assembly.GetName().Version?.ToString(3) ?? "0"));
    }

    /// <summary>Where the daemon is, for messages: <c>unix:/path</c> or <c>http://host:port</c>.</summary>
    public string Endpoint { get; }

    /// <summary>Sends a request within the request timeout and returns its JSON answer.</summary>
    public async Task<T> SendAsync<T>(HttpMethod method, string path, HttpContent? content, JsonTypeInfo<T> answer, ApiCall call, CancellationToken cancellationToken)
    {
        using CancellationTokenSource timeout = StartTimeout(cancellationToken);
        try
        {
            using HttpResponseMessage response = await OpenCoreAsync(method, path, content, call, timeout.Token);
            try
            {
                T? value = await response.Content.ReadFromJsonAsync(answer, timeout.Token);
                return value ?? throw Malformed(call, "an empty answer");
            }
            catch (JsonException e)
            {
                throw Malformed(call, "an answer that is not the expected JSON (" + e.Message + ")");
            }
            catch (IOException e)
            {
                throw Broken(call, e);
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"Could not {call.What}: the Vessel daemon at {Endpoint} did not answer within {_requestTimeout.TotalSeconds:0.#} s.");
        }
    }

    /// <summary>Sends a request and ignores the body of its answer. <paramref name="timed"/>: within the request timeout (false for uploads).</summary>
    public async Task SendAsync(HttpMethod method, string path, HttpContent? content, ApiCall call, CancellationToken cancellationToken, bool timed = true)
    {
        using CancellationTokenSource timeout = timed ? StartTimeout(cancellationToken) : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            using HttpResponseMessage response = await OpenCoreAsync(method, path, content, call, timeout.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"Could not {call.What}: the Vessel daemon at {Endpoint} did not answer within {_requestTimeout.TotalSeconds:0.#} s.");
        }
    }

    /// <summary>
    /// Sends a request and returns the successful response as soon as its headers arrived; the
    /// caller reads (and disposes) the body as a stream. No timeout: the token ends it.
    /// </summary>
    public Task<HttpResponseMessage> OpenAsync(HttpMethod method, string path, HttpContent? content, ApiCall call, CancellationToken cancellationToken)
        => OpenCoreAsync(method, path, content, call, cancellationToken);

    /// <summary>
    /// <see cref="OpenAsync"/> and the answer's body as a stream, for the caller to dispose (the
    /// stream, then the response). A connection that breaks before the body starts is
    /// <see cref="Broken"/>, and nothing is left open.
    /// </summary>
    public async Task<(HttpResponseMessage Response, Stream Body)> OpenStreamAsync(HttpMethod method, string path, HttpContent? content, ApiCall call, CancellationToken cancellationToken)
    {
        HttpResponseMessage response = await OpenCoreAsync(method, path, content, call, cancellationToken);
        try
        {
            return (response, await response.Content.ReadAsStreamAsync(cancellationToken));
        }
        catch (Exception e)
        {
            response.Dispose();
            if (e is IOException or HttpRequestException)
            {
                throw Broken(call, e);
            }
            throw;
        }
    }

    /// <summary>The exception for a connection that broke while <paramref name="call"/> was under way.</summary>
    public VesselConnectionException Broken(ApiCall call, Exception inner)
        => new($"Could not {call.What}: the connection to the Vessel daemon at {Endpoint} broke ({inner.Message}). Did the daemon stop?", inner);

    /// <summary>The exception for an answer this client cannot read.</summary>
    public VesselApiException Malformed(ApiCall call, string what)
        => new(HttpStatusCode.OK, new ApiProblem { Title = "Malformed answer", Detail = what },
            $"Could not {call.What}: the Vessel daemon at {Endpoint} sent {what}. Are the client and the daemon the same version?");

    public void Dispose() => _http.Dispose();

    private async Task<HttpResponseMessage> OpenCoreAsync(HttpMethod method, string path, HttpContent? content, ApiCall call, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError || e.InnerException is SocketException)
        {
            throw new VesselConnectionException(
                $"Could not {call.What}: cannot reach the Vessel daemon at {Endpoint} ({Describe(e)}). Is it running? Start it with 'vessel serve'.", e);
        }
        catch (HttpRequestException e)
        {
            throw Broken(call, e);
        }
        if (response.IsSuccessStatusCode)
        {
            return response;
        }
        using (response)
        {
            throw await ErrorAsync(response, call, cancellationToken);
        }
    }

    private async Task<VesselApiException> ErrorAsync(HttpResponseMessage response, ApiCall call, CancellationToken cancellationToken)
    {
        string body;
        try
        {
            body = await ReadBoundedAsync(response.Content, cancellationToken);
        }
        catch (IOException)
        {
            body = "";
        }
        ApiProblem? problem = null;
        if (body.Length > 0 && body[0] == '{')
        {
            try
            {
                ProblemWire? wire = JsonSerializer.Deserialize(body, WireJson.Default.ProblemWire);
                problem = wire is null ? null : new ApiProblem
                {
                    Type = wire.Type,
                    Title = wire.Title,
                    Status = wire.Status,
                    Detail = wire.Detail,
                    Instance = wire.Instance,
                    Extensions = wire.Extensions ?? [],
                };
            }
            catch (JsonException)
            {
                // Not a problem document: the body itself is the message below.
            }
        }
        int status = (int)response.StatusCode;
        problem ??= new ApiProblem { Status = status, Title = response.ReasonPhrase, Detail = body.Length > 0 ? body.Trim() : null };
        string reason = problem.Detail ?? problem.Title ?? response.ReasonPhrase ?? "no reason given";
        if (response.StatusCode == HttpStatusCode.Unauthorized)
        {
            reason += " (set VesselClientOptions.ApiKey, or VESSEL_API_KEY for the CLI, to a key from 'vessel keys create')";
        }
        string message = $"Could not {call.What}: {reason} (HTTP {status}).";
        if (response.StatusCode == HttpStatusCode.NotFound && call.SandboxId is string id
            && (call.NotFoundIsSandbox || !await SandboxExistsAsync(id, cancellationToken)))
        {
            return new SandboxNotFoundException(id, problem, message);
        }
        return new VesselApiException(response.StatusCode, problem, message);
    }

    /// <summary>
    /// On routes where a 404 may be a guest file or a pid, asks whether the sandbox itself is
    /// gone (a 404 of its own route), so that the exception type does not depend on message text.
    /// </summary>
    private async Task<bool> SandboxExistsAsync(string sandboxId, CancellationToken cancellationToken)
    {
        try
        {
            using HttpResponseMessage response = await _http.GetAsync("sandboxes/" + Uri.EscapeDataString(sandboxId), HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            return response.StatusCode != HttpStatusCode.NotFound;
        }
        catch (HttpRequestException)
        {
            return true; // cannot tell: report the original error as it is
        }
    }

    private static async Task<string> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
    {
        await using Stream stream = await content.ReadAsStreamAsync(cancellationToken);
        byte[] buffer = new byte[MaxErrorBody];
        int total = 0;
        int read;
        while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken)) > 0)
        {
            total += read;
        }
        return Encoding.UTF8.GetString(buffer, 0, total);
    }

    private CancellationTokenSource StartTimeout(CancellationToken cancellationToken)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (_requestTimeout != Timeout.InfiniteTimeSpan)
        {
            cts.CancelAfter(_requestTimeout);
        }
        return cts;
    }

    private static string Describe(HttpRequestException e)
        => e.InnerException is SocketException s ? s.SocketErrorCode switch
        {
            SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported => "no such socket",
            SocketError.ConnectionRefused => "connection refused",
            SocketError.AccessDenied => "permission denied",
            _ => s.Message,
        } : e.Message;
}
