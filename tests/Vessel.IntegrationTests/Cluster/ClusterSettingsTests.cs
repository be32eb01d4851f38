using Vessel.Common;
using Vessel.Testing;
using Xunit;

namespace Vessel.IntegrationTests.Cluster;

/// <summary><c>vessel serve --cluster</c> refuses what cannot form a cluster before it starts anything, saying what to set.</summary>
public sealed class ClusterSettingsTests : IDisposable
{
    private readonly TempDirectory _work = TempDirectory.Create("vcl-", "/tmp");

    public void Dispose() => _work.Dispose();

    private async Task<ProcessResult> ServeAsync(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        return await VesselCli.RunAsync(environment, cts.Token, ["serve", "--home", _work.Combine("home"), "--socket", _work.Combine("s.sock"), .. args]);
    }

    [Fact]
    public async Task A_cluster_node_whose_state_is_the_homes_sqlite_file_is_refused_naming_VESSEL_STATE()
    {
        ProcessResult r = await ServeAsync(new Dictionary<string, string>(), "--listen", "127.0.0.1:1", "--cluster");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("VESSEL_STATE=postgres://", r.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(_work.Combine("s.sock")));
    }

    [Fact]
    public async Task A_bad_silo_port_is_refused_naming_the_variable()
    {
        ProcessResult r = await ServeAsync(new Dictionary<string, string> { ["VESSEL_SILO_PORT"] = "99999" }, "--listen", "127.0.0.1:1", "--cluster");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("VESSEL_SILO_PORT: '99999' is not a port number", r.StandardError, StringComparison.Ordinal);
    }
}
