namespace Vessel.IntegrationTests.Oci;

/// <summary>
/// The one fake in these tests: the real registry's token auth needs TLS certificates, so
/// this proxy plays the auth side only. It answers /v2/ requests without the right Bearer
/// token with a 401 challenge (Docker token protocol), serves tokens at /token to a client
/// presenting the right Basic credentials, and forwards authorized requests to the real
/// registry unchanged.
/// </summary>
internal sealed class TokenAuthProxy : IAsyncDisposable
{
    public const string Username = "alice";
    public const string Password = "s3cret";
    private const string Token = "vessel-test-token";

    private readonly HttpListener _listener = new();
    private readonly HttpClient _upstream = new(new SocketsHttpHandler { AllowAutoRedirect = false });
    private readonly string _upstreamBase;
    private readonly Task _loop;
    private int _tokensIssued;
    private int _challenges;

    public TokenAuthProxy(string upstreamHost)
    {
        _upstreamBase = $"http://{upstreamHost}";
        Port = LocalRegistry.FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _loop = Task.Run(LoopAsync);
    }

    public int Port { get; }

    public string Host => $"127.0.0.1:{Port}";

    public int TokensIssued => _tokensIssued;

    public int Challenges => _challenges;

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        try
        {
            await _loop;
        }
        catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
        {
        }
        _upstream.Dispose();
    }

    private async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            _ = Task.Run(() => HandleAsync(context));
        }
    }

    private async Task HandleAsync(HttpListenerContext context)
    {
        HttpListenerRequest request = context.Request;
        HttpListenerResponse response = context.Response;
        try
        {
            string path = request.Url!.AbsolutePath;
            if (path == "/token")
            {
                string expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Username}:{Password}"));
                if (request.Headers["Authorization"] != expected || request.QueryString["service"] != "vessel-test")
                {
                    response.StatusCode = 401;
                    return;
                }
                Interlocked.Increment(ref _tokensIssued);
                byte[] body = Encoding.UTF8.GetBytes($"{{\"token\":\"{Token}\",\"expires_in\":300}}");
                response.ContentType = "application/json";
                await response.OutputStream.WriteAsync(body);
                return;
            }
            if (request.Headers["Authorization"] != "Bearer " + Token)
            {
                Interlocked.Increment(ref _challenges);
                response.StatusCode = 401;
                string repository = path.StartsWith("/v2/", StringComparison.Ordinal) && path.Contains("/manifests/", StringComparison.Ordinal)
                    ? path[4..path.IndexOf("/manifests/", StringComparison.Ordinal)]
                    : "unknown";
                response.AddHeader("WWW-Authenticate", $"Bearer realm=\"http://{Host}/token\",service=\"vessel-test\",scope=\"repository:{repository}:pull\"");
                return;
            }
            using var forward = new HttpRequestMessage(HttpMethod.Get, _upstreamBase + request.Url.PathAndQuery);
            foreach (string accept in request.AcceptTypes ?? [])
            {
                forward.Headers.TryAddWithoutValidation("Accept", accept);
            }
            using HttpResponseMessage upstream = await _upstream.SendAsync(forward, HttpCompletionOption.ResponseHeadersRead);
            response.StatusCode = (int)upstream.StatusCode;
            if (upstream.Content.Headers.ContentType is { } type)
            {
                response.ContentType = type.ToString();
            }
            if (upstream.Headers.TryGetValues("Docker-Content-Digest", out var digest))
            {
                response.AddHeader("Docker-Content-Digest", digest.First());
            }
            if (upstream.Content.Headers.ContentLength is long length)
            {
                response.ContentLength64 = length;
            }
            await using Stream body2 = await upstream.Content.ReadAsStreamAsync();
            await body2.CopyToAsync(response.OutputStream);
        }
        catch (Exception e) when (e is HttpListenerException or IOException or HttpRequestException)
        {
        }
        finally
        {
            try
            {
                response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
            }
        }
    }
}
