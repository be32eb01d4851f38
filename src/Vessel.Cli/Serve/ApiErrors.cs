using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Vessel.Agent;
using Vessel.Service;

namespace Vessel.Cli.Serve;

/// <summary>
/// The HTTP boundary (docs/api.md, "Conventions" and "Authentication"): API keys on TCP, and every
/// failure turned into problem details, logged once. User input never gets a 500.
/// </summary>
internal sealed partial class ApiErrors(RequestDelegate next, SandboxService service, ILogger<ApiErrors> logger)
{
    public const string KeyHeader = "X-API-Key";

    public async Task InvokeAsync(HttpContext context)
    {
        if (!ApiIo.IsUnixSocket(context)
            && !await ApiKeys.IsValidAsync(service.State, context.Request.Headers[KeyHeader].ToString(), context.RequestAborted))
        {
            await WriteAsync(context, StatusCodes.Status401Unauthorized, $"A valid API key is required in the {KeyHeader} header on TCP (create one with 'vessel keys create').");
            return;
        }
        try
        {
            await next(context);
            if (!context.Response.HasStarted && context.Response.StatusCode is >= 400 and < 500)
            {
                // Routing's own refusals come without a body: say what to fix.
                await WriteAsync(context, context.Response.StatusCode, context.Response.StatusCode switch
                {
                    StatusCodes.Status404NotFound => $"There is no route {context.Request.Method} {context.Request.Path} (docs/api.md lists them).",
                    StatusCodes.Status405MethodNotAllowed => $"{context.Request.Path} does not take {context.Request.Method} (docs/api.md lists the routes).",
                    StatusCodes.Status415UnsupportedMediaType => "Send this body as application/json (content-type header).",
                    _ => "The request was refused.",
                });
            }
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            (int status, string detail) = Map(e);
            if (status >= 500)
            {
                LogFailure(logger, e, context.Request.Method, context.Request.Path);
            }
            await WriteAsync(context, status, detail);
        }
        catch (Exception e)
        {
            // Too late for a status: the stream simply ends (NDJSON streams write an error line themselves).
            LogFailure(logger, e, context.Request.Method, context.Request.Path);
        }
    }

    public static (int Status, string Detail) Map(Exception e) => e switch
    {
        AgentException a => (a.Code switch
        {
            2 or 3 => StatusCodes.Status404NotFound,
            17 or 39 => StatusCodes.Status409Conflict,
            _ => StatusCodes.Status400BadRequest,
        }, a.Message),
        VesselException v => (v.Reason switch
        {
            VesselErrorReason.InvalidInput or VesselErrorReason.Corrupt => StatusCodes.Status400BadRequest,
            VesselErrorReason.NotFound => StatusCodes.Status404NotFound,
            VesselErrorReason.AlreadyExists or VesselErrorReason.Conflict => StatusCodes.Status409Conflict,
            VesselErrorReason.Unavailable => StatusCodes.Status503ServiceUnavailable,
            VesselErrorReason.Timeout => StatusCodes.Status504GatewayTimeout,
            _ => StatusCodes.Status500InternalServerError,
        }, v.Message),
        JsonException j => (StatusCodes.Status400BadRequest, "The body is not valid JSON for this request: " + j.Message),
        BadHttpRequestException b => (b.StatusCode, b.Message),
        TimeoutException t => (StatusCodes.Status504GatewayTimeout, t.Message),
        _ => (StatusCodes.Status500InternalServerError, $"Vessel failed ({e.GetType().Name}): {e.Message}"),
    };

    public static Task WriteAsync(HttpContext context, int status, string detail)
    {
        context.Response.Clear();
        context.Response.StatusCode = status;
        string title = ReasonPhrases(status);
        return context.Response.WriteAsJsonAsync(
            new Problem("https://vessel.dev/problems/" + title.ToLowerInvariant().Replace(' ', '-'), title, status, detail),
            (JsonSerializerOptions?)null, "application/problem+json", context.RequestAborted);
    }

    private static string ReasonPhrases(int status) => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status) is { Length: > 0 } p ? p : "Error";

    [LoggerMessage(7050, LogLevel.Error, "{Method} {Path} failed")]
    private static partial void LogFailure(ILogger logger, Exception exception, string method, string path);

    private sealed record Problem(string Type, string Title, int Status, string Detail);
}
