using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Vessel.Common;
using Vessel.State;

namespace Vessel.Cli.Serve.Cluster;

/// <summary>
/// The streaming reverse proxy between nodes: the request's body is streamed to the owner
/// (<see cref="StreamContent"/>), the answer is passed back as it arrives (response headers
/// first, then the body chunk by chunk, flushed: a command's NDJSON lines arrive as the owner
/// writes them). Hop-by-hop headers are dropped; the client's API key travels with the request,
/// and a request that came on the unix socket (no key) is sent with this node's own key.
/// </summary>
internal sealed class ClusterProxy(ClusterNodeKey nodeKey) : IDisposable
{
    /// <summary>RFC 9110 section 7.6.1's connection-specific headers, plus Host (the owner's is set by the client).</summary>
    private static readonly HashSet<string> s_hopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
    };

    private readonly HttpClient _client = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        ConnectTimeout = TimeSpan.FromSeconds(10),
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan, // commands stream for as long as they run; the client's hang-up cancels
    };

    /// <summary>Passes the request to <paramref name="owner"/>'s API and its answer back; <paramref name="body"/> is a body already read (a create), else the request's stream.</summary>
    public async Task ForwardAsync(HttpContext context, NodeRecord owner, byte[]? body)
    {
        HttpRequest request = context.Request;
        var target = new Uri(new Uri(owner.ApiUrl), request.Path.Value + request.QueryString.Value);
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), target);
        if (body is not null)
        {
            message.Content = new ByteArrayContent(body);
        }
        else if (request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0)
        {
            message.Content = new StreamContent(request.Body, 64 * 1024);
        }
        CopyRequestHeaders(request, message);
        HttpResponseMessage response;
        try
        {
            response = await _client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, context.RequestAborted);
        }
        catch (HttpRequestException e)
        {
            throw new VesselException(VesselErrorReason.Unavailable,
                $"The sandbox's node '{owner.Name}' at {owner.ApiUrl} did not answer ({e.Message}); if it died, the cluster marks its running sandboxes lost once its membership declares it dead (docs/cluster.md).", e);
        }
        using (response)
        {
            await CopyResponseAsync(context, response, owner.Name);
        }
    }

    private void CopyRequestHeaders(HttpRequest request, HttpRequestMessage message)
    {
        foreach ((string name, Microsoft.Extensions.Primitives.StringValues values) in request.Headers)
        {
            if (s_hopByHop.Contains(name))
            {
                continue;
            }
            if (!message.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
            {
                message.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }
        if (ApiIo.IsUnixSocket(request.HttpContext))
        {
            // A unix-socket request needs no key; the owner's TCP API does: this node vouches for it.
            message.Headers.Remove(ApiErrors.KeyHeader);
            message.Headers.Add(ApiErrors.KeyHeader, nodeKey.Key);
        }
        message.Headers.Add(ClusterForwarding.ForwardedHeader, nodeKey.Node);
    }

    private static async Task CopyResponseAsync(HttpContext context, HttpResponseMessage response, string owner)
    {
        HttpResponse answer = context.Response;
        answer.StatusCode = (int)response.StatusCode;
        foreach (KeyValuePair<string, IEnumerable<string>> header in response.Headers.Concat(response.Content.Headers))
        {
            if (!s_hopByHop.Contains(header.Key))
            {
                answer.Headers[header.Key] = header.Value.ToArray();
            }
        }
        answer.Headers[ClusterForwarding.ServedByHeader] = owner;
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await using Stream from = await response.Content.ReadAsStreamAsync(context.RequestAborted);
        byte[] buffer = new byte[64 * 1024];
        int n;
        while ((n = await from.ReadAsync(buffer, context.RequestAborted)) > 0)
        {
            await answer.Body.WriteAsync(buffer.AsMemory(0, n), context.RequestAborted);
            await answer.Body.FlushAsync(context.RequestAborted);
        }
    }

    public void Dispose() => _client.Dispose();
}
