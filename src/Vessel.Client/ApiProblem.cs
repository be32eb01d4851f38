using System.Text.Json;

namespace Vessel.Client;

/// <summary>RFC 9457 problem details, as the daemon sends them with every error.</summary>
public sealed class ApiProblem
{
    /// <summary>A URI or name for the kind of problem.</summary>
    public string? Type { get; init; }

    /// <summary>A short summary of the kind of problem.</summary>
    public string? Title { get; init; }

    /// <summary>The HTTP status.</summary>
    public int? Status { get; init; }

    /// <summary>What went wrong in this request, for a person.</summary>
    public string? Detail { get; init; }

    /// <summary>The request path the problem concerns.</summary>
    public string? Instance { get; init; }

    /// <summary>Any other members the daemon sent (e.g. <c>sandboxId</c>, <c>state</c>).</summary>
    public IReadOnlyDictionary<string, JsonElement> Extensions { get; init; } = new Dictionary<string, JsonElement>();
}
