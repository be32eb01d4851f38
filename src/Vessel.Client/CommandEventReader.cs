using System.Text;
using System.Text.Json;
using Vessel.Client.Wire;

namespace Vessel.Client;

/// <summary>
/// Reads a command's NDJSON stream (<c>start</c>, <c>stdout</c>, <c>stderr</c>, <c>exit</c> lines) one
/// event at a time, as it arrives; owns the response and disposes it. A connection that breaks
/// becomes <see cref="VesselConnectionException"/>, a line it cannot read
/// <see cref="VesselApiException"/>.
/// </summary>
internal sealed class CommandEventReader : IDisposable
{
    private readonly ApiTransport _transport;
    private readonly ApiCall _call;
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private CommandEventReader(ApiTransport transport, ApiCall call, HttpResponseMessage response, Stream body)
    {
        _transport = transport;
        _call = call;
        _response = response;
        _reader = new StreamReader(body, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: false);
    }

    public static async Task<CommandEventReader> OpenAsync(ApiTransport transport, HttpMethod method, string path, CommandRequest? body, ApiCall call, CancellationToken cancellationToken)
    {
        HttpContent? content = body is null ? null : JsonBody.Create(body, WireJson.Default.CommandRequest);
        (HttpResponseMessage response, Stream stream) = await transport.OpenStreamAsync(method, path, content, call, cancellationToken);
        return new CommandEventReader(transport, call, response, stream);
    }

    /// <summary>The next event, or null when the daemon ended the stream.</summary>
    public async Task<CommandEvent?> ReadAsync(CancellationToken cancellationToken)
    {
        string? line;
        do
        {
            try
            {
                line = await _reader.ReadLineAsync(cancellationToken);
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                throw _transport.Broken(_call, e);
            }
            if (line is null)
            {
                return null;
            }
        }
        while (line.Length == 0);
        CommandEvent? value;
        try
        {
            value = JsonSerializer.Deserialize(line, WireJson.Default.CommandEvent);
        }
        catch (JsonException e)
        {
            throw _transport.Malformed(_call, "an output line that is not JSON (" + e.Message + ")");
        }
        if (value?.Type is null)
        {
            throw _transport.Malformed(_call, "an output line without a type");
        }
        if (value.Type == "error")
        {
            var problem = new ApiProblem { Title = "Command failed", Detail = value.Message };
            throw new VesselApiException(System.Net.HttpStatusCode.OK, problem, $"Could not {_call.What}: {value.Message ?? "the daemon reported an error"}.");
        }
        return value;
    }

    /// <summary>The exception for a stream that ended before the command's exit line.</summary>
    public VesselConnectionException EndedEarly(int pid)
        => new($"Could not {_call.What}: the Vessel daemon at {_transport.Endpoint} ended the output stream before process {pid} exited. Did the daemon stop?", null);

    public void Dispose()
    {
        _reader.Dispose();
        _response.Dispose();
    }
}
