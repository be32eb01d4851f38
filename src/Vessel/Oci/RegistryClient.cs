using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Vessel.Common;

namespace Vessel.Oci;

/// <summary>
/// A client of the OCI distribution API (distribution-spec spec.md, "Pull") for one
/// repository: manifests and blobs by GET, anonymous or token auth (the Docker token
/// protocol: a 401 with <c>WWW-Authenticate: Bearer realm=...,service=...,scope=...</c>, a
/// GET to the realm, optionally with Basic credentials, returning <c>{"token": ...}</c>),
/// Basic auth when a registry asks for it, and redirects followed by hand so that
/// credentials never travel to another host (blob storage behind a redirect).
/// </summary>
internal sealed class RegistryClient : IDisposable
{
    private const int MaxRedirects = 5;
    private const int MaxTokenResponse = 1 << 20; // token responses are a few KiB
    private const int MaxErrorBody = 4096; // enough for the registry's error JSON

    private static readonly string[] ManifestAccept =
    [
        OciMediaTypes.ImageManifest,
        OciMediaTypes.ImageIndex,
        OciMediaTypes.DockerManifest,
        OciMediaTypes.DockerManifestList,
    ];

    private readonly RegistryReference _reference;
    private readonly ImageSourceOptions _options;
    private readonly HttpClient _http;
    private readonly Uri _base;
    private AuthenticationHeaderValue? _authorization;

    public RegistryClient(RegistryReference reference, ImageSourceOptions options, HttpMessageHandler? handler = null)
    {
        _reference = reference;
        _options = options;
        _http = new HttpClient(handler ?? new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = options.RequestTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
        })
        {
            // Blob bodies stream for as long as they take; each request's headers are bounded by RequestTimeout.
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("vessel", "0.1"));
        _base = new Uri($"{(options.Insecure ? "http" : "https")}://{reference.ApiHost}/");
    }

    /// <summary>Fetches a manifest or index by tag or digest, checking its digest (the requested one, or the one the registry states).</summary>
    public async Task<(byte[] Json, string? ContentType, OciDigest Digest)> GetManifestAsync(
        string reference, OciDigest? expected, string what, CancellationToken cancellationToken)
    {
        var uri = new Uri(_base, $"v2/{_reference.Repository}/manifests/{Uri.EscapeDataString(reference)}");
        using HttpResponseMessage response = await SendAsync(uri, ManifestAccept, what, cancellationToken);
        await EnsureSuccessAsync(response, what, cancellationToken);
        if (response.Content.Headers.ContentLength > OciDocuments.MaxDocumentSize)
        {
            throw new InvalidDataException($"{what} is {response.Content.Headers.ContentLength} bytes; Vessel reads JSON documents up to {Vessel.Common.ByteSize.Format(OciDocuments.MaxDocumentSize)}.");
        }
        await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken);
        byte[] json = await OciDocuments.ReadLimitedAsync(body, OciDocuments.MaxDocumentSize, what, cancellationToken);
        OciDigest actual = OciDigest.Compute(json);
        if (expected is not null && actual != expected)
        {
            throw BlobErrors.Mismatch($"{what} does not match its digest: expected {expected}, got {actual}. The registry served other content.");
        }
        if (response.Headers.TryGetValues("Docker-Content-Digest", out var stated)
            && OciDigest.TryParse(stated.FirstOrDefault(), out OciDigest statedDigest) && statedDigest != actual)
        {
            throw BlobErrors.Mismatch($"{what} does not match the digest the registry states: expected {statedDigest}, got {actual}.");
        }
        return (json, response.Content.Headers.ContentType?.MediaType, actual);
    }

    /// <summary>Opens a blob's body as a stream (the caller verifies it); disposing the stream releases the response.</summary>
    public async Task<Stream> OpenBlobAsync(OciDescriptor descriptor, string what, CancellationToken cancellationToken)
    {
        var uri = new Uri(_base, $"v2/{_reference.Repository}/blobs/{descriptor.Digest}");
        HttpResponseMessage response = await SendAsync(uri, ["*/*"], what, cancellationToken);
        try
        {
            await EnsureSuccessAsync(response, what, cancellationToken);
            if (response.Content.Headers.ContentLength is long length && length != descriptor.Size)
            {
                throw BlobErrors.Mismatch($"{what}: the registry sends {length} bytes but the manifest declares {descriptor.Size}.");
            }
            Stream body = await response.Content.ReadAsStreamAsync(cancellationToken);
            return new ResponseStream(body, response);
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    public void Dispose() => _http.Dispose();

    private async Task<HttpResponseMessage> SendAsync(Uri uri, string[] accept, string what, CancellationToken cancellationToken)
    {
        HttpResponseMessage response = await SendFollowingRedirectsAsync(uri, accept, what, cancellationToken);
        if (response.StatusCode != HttpStatusCode.Unauthorized)
        {
            return response;
        }
        AuthenticationHeaderValue? challenge = response.Headers.WwwAuthenticate.FirstOrDefault();
        response.Dispose();
        if (challenge is null)
        {
            throw new VesselException(VesselErrorReason.Protocol, $"{what}: registry {_reference.Registry} answered 401 without a WWW-Authenticate challenge.");
        }
        bool hadAuthorization = _authorization is not null;
        await AuthenticateAsync(challenge, what, cancellationToken);
        response = await SendFollowingRedirectsAsync(uri, accept, what, cancellationToken);
        if (response.StatusCode == HttpStatusCode.Unauthorized)
        {
            response.Dispose();
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"{what}: registry {_reference.Registry} refused access to {_reference.Repository}{(hadAuthorization || _options.Credentials is not null ? " with the given credentials" : "; it may need credentials")}.");
        }
        return response;
    }

    private async Task<HttpResponseMessage> SendFollowingRedirectsAsync(Uri uri, string[] accept, string what, CancellationToken cancellationToken)
    {
        for (int hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            foreach (string type in accept)
            {
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
            }
            if (_authorization is not null && SameOrigin(uri, _base))
            {
                request.Headers.Authorization = _authorization;
            }
            HttpResponseMessage response = await SendWithTimeoutAsync(request, what, cancellationToken);
            if (response.StatusCode is HttpStatusCode.MovedPermanently or HttpStatusCode.Found or HttpStatusCode.SeeOther
                or HttpStatusCode.TemporaryRedirect or HttpStatusCode.PermanentRedirect)
            {
                Uri? location = response.Headers.Location;
                response.Dispose();
                if (location is null)
                {
                    throw new VesselException(VesselErrorReason.Protocol, $"{what}: the registry redirected without a Location.");
                }
                if (hop >= MaxRedirects)
                {
                    throw new VesselException(VesselErrorReason.Protocol, $"{what}: more than {MaxRedirects} redirects.");
                }
                uri = location.IsAbsoluteUri ? location : new Uri(uri, location);
                if (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp)
                {
                    throw new VesselException(VesselErrorReason.Protocol, $"{what}: the registry redirected to a {uri.Scheme} URL.");
                }
                continue;
            }
            return response;
        }
    }

    private async Task<HttpResponseMessage> SendWithTimeoutAsync(HttpRequestMessage request, string what, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new VesselException(VesselErrorReason.Timeout,
                $"{what}: {request.RequestUri!.Authority} did not answer within {_options.RequestTimeout.TotalSeconds:0} s.");
        }
        catch (HttpRequestException e)
        {
            string hint = !_options.Insecure && request.RequestUri!.Scheme == Uri.UriSchemeHttps
                ? " If it is a plain-HTTP registry (a local one), use the insecure option (--insecure)."
                : string.Empty;
            throw new VesselException(VesselErrorReason.Unavailable,
                $"{what}: cannot reach {request.RequestUri!.GetLeftPart(UriPartial.Authority)}: {e.Message}.{hint}", e);
        }
    }

    private async Task AuthenticateAsync(AuthenticationHeaderValue challenge, string what, CancellationToken cancellationToken)
    {
        Dictionary<string, string> parameters = ParseChallenge(challenge.Parameter ?? string.Empty);
        if (string.Equals(challenge.Scheme, "Basic", StringComparison.OrdinalIgnoreCase))
        {
            RegistryCredentials credentials = _options.Credentials
                ?? throw new VesselException(VesselErrorReason.InvalidInput,
                    $"{what}: registry {_reference.Registry} requires a user name and password (HTTP Basic); none were given.");
            _authorization = BasicHeader(credentials);
            return;
        }
        if (!string.Equals(challenge.Scheme, "Bearer", StringComparison.OrdinalIgnoreCase))
        {
            throw new VesselException(VesselErrorReason.Unsupported,
                $"{what}: registry {_reference.Registry} asks for '{OciDigest.Printable(challenge.Scheme)}' authentication; Vessel speaks Bearer tokens and Basic.");
        }
        if (!parameters.TryGetValue("realm", out string? realm) || !Uri.TryCreate(realm, UriKind.Absolute, out Uri? realmUri)
            || (realmUri.Scheme != Uri.UriSchemeHttps && !(realmUri.Scheme == Uri.UriSchemeHttp && _options.Insecure)))
        {
            throw new VesselException(VesselErrorReason.Protocol,
                $"{what}: registry {_reference.Registry} gave the token realm '{OciDigest.Printable(realm)}'; it must be an https URL (http only with the insecure option).");
        }
        var query = new StringBuilder();
        if (parameters.TryGetValue("service", out string? service))
        {
            query.Append("service=").Append(Uri.EscapeDataString(service));
        }
        string scope = parameters.GetValueOrDefault("scope") ?? $"repository:{_reference.Repository}:pull";
        query.Append(query.Length > 0 ? "&" : string.Empty).Append("scope=").Append(Uri.EscapeDataString(scope));
        var tokenUri = new UriBuilder(realmUri) { Query = (realmUri.Query.TrimStart('?') + (realmUri.Query.Length > 1 ? "&" : string.Empty) + query).TrimStart('&') }.Uri;

        using var request = new HttpRequestMessage(HttpMethod.Get, tokenUri);
        if (_options.Credentials is { } credentials2)
        {
            request.Headers.Authorization = BasicHeader(credentials2);
        }
        string tokenWhat = $"{what}: token from {tokenUri.GetLeftPart(UriPartial.Path)}";
        using HttpResponseMessage response = await SendWithTimeoutAsync(request, tokenWhat, cancellationToken);
        if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"{tokenWhat}: the token service refused {(_options.Credentials is null ? "anonymous access; give credentials" : "the given credentials")} ({(int)response.StatusCode}).");
        }
        await EnsureSuccessAsync(response, tokenWhat, cancellationToken);
        await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken);
        byte[] json = await OciDocuments.ReadLimitedAsync(body, MaxTokenResponse, tokenWhat, cancellationToken);
        using JsonDocument doc = OciDocuments.ParseJson(json, tokenWhat);
        JsonElement root = OciDocuments.RequireObject(doc.RootElement, tokenWhat);
        string? token = OciDocuments.OptionalString(root, "token", tokenWhat) ?? OciDocuments.OptionalString(root, "access_token", tokenWhat);
        if (string.IsNullOrEmpty(token))
        {
            throw new VesselException(VesselErrorReason.Protocol, $"{tokenWhat}: the response holds no token.");
        }
        _authorization = new AuthenticationHeaderValue("Bearer", token);
    }

    private async Task EnsureSuccessAsync(HttpResponseMessage response, string what, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        string detail = await ReadErrorAsync(response, cancellationToken);
        VesselErrorReason reason = response.StatusCode switch
        {
            HttpStatusCode.NotFound => VesselErrorReason.NotFound,
            HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized => VesselErrorReason.InvalidInput,
            HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable or HttpStatusCode.BadGateway or HttpStatusCode.GatewayTimeout => VesselErrorReason.Unavailable,
            _ => VesselErrorReason.Protocol,
        };
        string verdict = response.StatusCode == HttpStatusCode.NotFound ? "not found" : $"failed with HTTP {(int)response.StatusCode}";
        throw new VesselException(reason, $"{what}: {verdict} on {_reference.Registry}{(detail.Length > 0 ? $" ({detail})" : string.Empty)}.");
    }

    /// <summary>The registry's error list (distribution-spec "Error Codes"), or the start of the body.</summary>
    private static async Task<string> ReadErrorAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken);
            byte[] buffer = new byte[MaxErrorBody];
            int n = await body.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken);
            try
            {
                using JsonDocument doc = JsonDocument.Parse(buffer.AsMemory(0, n));
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("errors", out JsonElement errors) && errors.ValueKind == JsonValueKind.Array)
                {
                    return string.Join("; ", errors.EnumerateArray().Select(e =>
                        e.ValueKind == JsonValueKind.Object
                            ? $"{(e.TryGetProperty("code", out var c) ? c.ToString() : "?")}: {(e.TryGetProperty("message", out var m) ? m.ToString() : string.Empty)}"
                            : e.ToString()));
                }
            }
            catch (JsonException)
            {
            }
            return OciDigest.Printable(Encoding.UTF8.GetString(buffer, 0, n).Trim());
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            return string.Empty;
        }
    }

    private static AuthenticationHeaderValue BasicHeader(RegistryCredentials credentials) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{credentials.Username}:{credentials.Password}")));

    private static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme == b.Scheme && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    /// <summary>Parses <c>key="value", key=value</c> pairs of an auth challenge (RFC 7235, section 2.1).</summary>
    internal static Dictionary<string, string> ParseChallenge(string parameter)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        int i = 0;
        while (i < parameter.Length)
        {
            while (i < parameter.Length && (parameter[i] == ',' || char.IsWhiteSpace(parameter[i])))
            {
                i++;
            }
            int eq = parameter.IndexOf('=', i);
            if (eq < 0)
            {
                break;
            }
            string key = parameter[i..eq].Trim();
            i = eq + 1;
            var value = new StringBuilder();
            if (i < parameter.Length && parameter[i] == '"')
            {
                i++;
                while (i < parameter.Length && parameter[i] != '"')
                {
                    if (parameter[i] == '\\' && i + 1 < parameter.Length)
                    {
                        i++;
                    }
                    value.Append(parameter[i]);
                    i++;
                }
                i++; // closing quote
            }
            else
            {
                while (i < parameter.Length && parameter[i] != ',')
                {
                    value.Append(parameter[i]);
                    i++;
                }
            }
            result[key] = value.ToString().Trim();
        }
        return result;
    }

    /// <summary>A response body that disposes its response.</summary>
    private sealed class ResponseStream(Stream body, HttpResponseMessage response) : ReadOnlyStream
    {
        protected override int ReadCore(Span<byte> buffer) => body.Read(buffer);

        protected override ValueTask<int> ReadCoreAsync(Memory<byte> buffer, CancellationToken cancellationToken) =>
            body.ReadAsync(buffer, cancellationToken);

        protected override async ValueTask ReleaseAsync()
        {
            await body.DisposeAsync();
            response.Dispose();
        }
    }
}

/// <summary>An image in a registry, pulled over the distribution API.</summary>
internal sealed class RegistryImageSource : OciImageSource
{
    private readonly RegistryReference _reference;
    private readonly RegistryClient _client;

    public RegistryImageSource(RegistryReference reference, ImageSourceOptions options, HttpMessageHandler? handler = null)
        : base(reference.ToString(), options)
    {
        _reference = reference;
        _client = new RegistryClient(reference, options, handler);
    }

    public override async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await base.DisposeAsync();
    }

    protected override async Task<(OciDescriptor Root, byte[]? Json, string? ContentType)> SelectRootAsync(CancellationToken cancellationToken)
    {
        string what = $"manifest of {Description}";
        (byte[] json, string? contentType, OciDigest digest) = await _client.GetManifestAsync(_reference.Reference, _reference.Digest, what, cancellationToken);
        var root = new OciDescriptor(contentType ?? OciMediaTypes.ImageManifest, digest, json.Length, null, new Dictionary<string, string>(), []);
        return (root, json, contentType);
    }

    protected override async Task<byte[]> ReadManifestAsync(OciDescriptor descriptor, CancellationToken cancellationToken)
    {
        string what = $"manifest {descriptor.Digest} of {Description}";
        OciDocuments.CheckDocumentSize(descriptor, what);
        (byte[] json, _, _) = await _client.GetManifestAsync(descriptor.Digest.ToString(), descriptor.Digest, what, cancellationToken);
        return json;
    }

    protected override Task<Stream> OpenBlobAsync(OciDescriptor descriptor, string what, CancellationToken cancellationToken) =>
        _client.OpenBlobAsync(descriptor, what, cancellationToken);
}
