using Vessel.IntegrationTests.Service;
using Vessel.IntegrationTests.State;

namespace Vessel.IntegrationTests.Cluster;

/// <summary>
/// What the cluster fixtures share: a real PostgreSQL that holds both Vessel's state and Orleans'
/// membership, and real <c>vessel serve --cluster</c> daemons on it (nodes a, b, ...: separate
/// homes, ports on loopback). Only node a builds template "t". Disposal stops the nodes, last
/// first, then PostgreSQL and what a subclass shares, and checks that none of it outlived the
/// fixture. Where a requirement is missing it starts nothing (the tests skip, or fail under CI).
/// </summary>
public abstract class ClusterFixtureBase : IAsyncLifetime
{
    /// <summary>The nodes' probe timeout: a killed node is declared dead in seconds.</summary>
    public const string ProbeMilliseconds = "1000";

    private readonly string[] _requirements;
    private readonly DaemonFixture?[] _nodes;
    private PostgresServer? _postgres;

    /// <param name="nodes">How many nodes: node-a, node-b, ...</param>
    /// <param name="moreRequirements">What the subclass needs beyond the daemons and PostgreSQL.</param>
    private protected ClusterFixtureBase(int nodes, params string[] moreRequirements)
    {
        _requirements = [.. DaemonFixture.Requirements, PostgresServer.BinDirectory + "/initdb", .. moreRequirements];
        _nodes = new DaemonFixture?[nodes];
    }

    /// <summary>Node a (0), b (1), ...; null where a requirement is missing.</summary>
    private protected DaemonFixture? Node(int index) => _nodes[index];

    public async Task InitializeAsync()
    {
        if (Requirements.FirstMissing(_requirements) is not null)
        {
            return;
        }
        _postgres = await PostgresServer.StartAsync(CancellationToken.None);
        await StartSharedAsync();
        string url = await _postgres.CreateDatabaseAsync(CancellationToken.None);
        for (int i = 0; i < _nodes.Length; i++)
        {
            var environment = new Dictionary<string, string>
            {
                ["VESSEL_STATE"] = url,
                ["VESSEL_NODE"] = $"node-{(char)('a' + i)}",
                ["VESSEL_SILO_PORT"] = DaemonFixture.FreePort().ToString(CultureInfo.InvariantCulture),
                ["VESSEL_GATEWAY_PORT"] = DaemonFixture.FreePort().ToString(CultureInfo.InvariantCulture),
                ["VESSEL_CLUSTER_PROBE_MS"] = ProbeMilliseconds,
            };
            AddSharedEnvironment(environment);
            _nodes[i] = new DaemonFixture { Environment = environment, ServeArguments = ["--cluster"], BuildsTemplate = i == 0 };
            await _nodes[i]!.InitializeAsync();
        }
    }

    /// <summary>Starts what the nodes share besides PostgreSQL (after it, before the nodes).</summary>
    private protected virtual Task StartSharedAsync() => Task.CompletedTask;

    /// <summary>Adds what <see cref="StartSharedAsync"/> started to a node's environment.</summary>
    private protected virtual void AddSharedEnvironment(Dictionary<string, string> environment)
    {
    }

    /// <summary>Stops what <see cref="StartSharedAsync"/> started (after the nodes and PostgreSQL).</summary>
    private protected virtual Task StopSharedAsync() => Task.CompletedTask;

    /// <summary>Asserts that nothing <see cref="StartSharedAsync"/> started is still running.</summary>
    private protected virtual void AssertSharedStopped()
    {
    }

    public async Task DisposeAsync()
    {
        DaemonFixture?[] nodes = [.. _nodes.Reverse()];
        string[] homes = [.. nodes.Where(d => d?.Work is not null).Select(d => d!.Home)];
        int postgres = _postgres?.ProcessId ?? 0;
        try
        {
            foreach (DaemonFixture? d in nodes)
            {
                if (d is not null)
                {
                    await d.DisposeAsync();
                }
            }
        }
        finally
        {
            if (_postgres is not null)
            {
                await _postgres.DisposeAsync();
            }
            await StopSharedAsync();
        }
        // Nothing of the cluster outlives it: no daemon or VM naming a node's home, no PostgreSQL.
        Assert.Empty(ProcessTable.Matching(c => homes.Any(h => c.Contains(h, StringComparison.Ordinal))));
        Assert.False(postgres != 0 && Directory.Exists($"/proc/{postgres}"), $"PostgreSQL (pid {postgres}) outlived the fixture");
        AssertSharedStopped();
    }
}
