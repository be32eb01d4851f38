using System.Text.Json.Serialization;

namespace Vessel.Client.Wire;

// The JSON shapes of the daemon's API (issue 13, docs/api.md), kept apart from the public types
// so that the public surface can stay stable while the wire grows.

internal sealed class CreateSandboxRequest
{
    public required string Template { get; init; }
    public int? TimeoutSeconds { get; init; }
    public bool? AutoPause { get; init; }
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
    public IReadOnlyDictionary<string, string>? Env { get; init; }
}

internal sealed class SandboxWire
{
    public string? SandboxId { get; init; }
    public string? Template { get; init; }
    public string? State { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? EndAt { get; init; }
    public Dictionary<string, string>? Metadata { get; init; }
}

internal sealed class TimeoutRequest
{
    public int TimeoutSeconds { get; init; }
}

internal sealed class CommandRequest
{
    public required string Cmd { get; init; }
    public IReadOnlyList<string>? Args { get; init; }
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    public string? Cwd { get; init; }
    public string? User { get; init; }
    public byte[]? Stdin { get; init; }
    public bool Background { get; init; }
    public double? TimeoutSeconds { get; init; }
    public string? Container { get; init; }
}

/// <summary>One NDJSON line of a command's output stream.</summary>
internal sealed class CommandEvent
{
    public string? Type { get; init; }
    public int? Pid { get; init; }
    public byte[]? Data { get; init; }
    public int? ExitCode { get; init; }
    public int? Signal { get; init; }
    public bool? TimedOut { get; init; }
    public long? DroppedBytes { get; init; }
    public string? Message { get; init; }
}

internal sealed class ProcessWire
{
    public int Pid { get; init; }
    public string? Cmd { get; init; }
    public List<string>? Args { get; init; }
    public string? Cwd { get; init; }
    public string? User { get; init; }
    public bool? Background { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
}

internal sealed class SignalRequest
{
    public int Signal { get; init; }
}

internal sealed class FileEntryWire
{
    public string? Name { get; init; }
    public string? Path { get; init; }
    public string? Type { get; init; }
    public long? Size { get; init; }
    public int? Mode { get; init; }
    public string? Owner { get; init; }
    public DateTimeOffset? Mtime { get; init; }
    public string? LinkTarget { get; init; }
}

internal sealed class MoveRequest
{
    public required string From { get; init; }
    public required string To { get; init; }
}

internal sealed class BuildStarted
{
    public string? BuildId { get; init; }
}

internal sealed class BuildWire
{
    public string? BuildId { get; init; }
    public string? Template { get; init; }
    public string? Status { get; init; }
    public string? Error { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
}

internal sealed class TemplateWire
{
    public string? Name { get; init; }
    public DateTimeOffset? BuiltAt { get; init; }
    public long? DiskSizeBytes { get; init; }
    public bool? HasSnapshot { get; init; }
    public int? Cpu { get; init; }
    public int? MemoryMb { get; init; }
    public string? FinalHash { get; init; }
}

internal sealed class ProblemWire
{
    public string? Type { get; set; }
    public string? Title { get; set; }
    public int? Status { get; set; }
    public string? Detail { get; set; }
    public string? Instance { get; set; }

    [JsonExtensionData]
    public Dictionary<string, System.Text.Json.JsonElement>? Extensions { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    PropertyNameCaseInsensitive = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.AllowReadingFromString)]
[JsonSerializable(typeof(CreateSandboxRequest))]
[JsonSerializable(typeof(SandboxWire))]
[JsonSerializable(typeof(List<SandboxWire>))]
[JsonSerializable(typeof(TimeoutRequest))]
[JsonSerializable(typeof(CommandRequest))]
[JsonSerializable(typeof(CommandEvent))]
[JsonSerializable(typeof(List<ProcessWire>))]
[JsonSerializable(typeof(SignalRequest))]
[JsonSerializable(typeof(FileEntryWire))]
[JsonSerializable(typeof(List<FileEntryWire>))]
[JsonSerializable(typeof(MoveRequest))]
[JsonSerializable(typeof(BuildStarted))]
[JsonSerializable(typeof(BuildWire))]
[JsonSerializable(typeof(TemplateWire))]
[JsonSerializable(typeof(List<TemplateWire>))]
[JsonSerializable(typeof(ProblemWire))]
internal sealed partial class WireJson : JsonSerializerContext;
