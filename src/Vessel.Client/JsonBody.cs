using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Vessel.Client;

/// <summary>
/// A request body serialized up front (source-generated JSON) into one buffer: the request goes
/// out with a Content-Length in one write, where <c>JsonContent</c> streams it chunked (headers,
/// a chunk, the last chunk), which costs the daemon more reads per request.
/// </summary>
internal static class JsonBody
{
    private static readonly MediaTypeHeaderValue s_json = new("application/json") { CharSet = "utf-8" };

    public static ByteArrayContent Create<T>(T value, JsonTypeInfo<T> type)
    {
        var content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(value, type));
        content.Headers.ContentType = s_json;
        return content;
    }
}
