namespace Vessel.IntegrationTests.Service;

/// <summary>
/// A command's NDJSON answer from the daemon, parsed (<see cref="DaemonFixture.ParseCommand"/>): its
/// stdout and stderr, its last line (exit or error; for a refused request, the error body) and the
/// pid of its start line.
/// </summary>
public sealed record CommandRun(string Stdout, string Stderr, JsonNode Exit, int Pid);
