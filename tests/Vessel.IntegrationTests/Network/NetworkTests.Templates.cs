using Vessel.IntegrationTests.Templates;

namespace Vessel.IntegrationTests.Network;

/// <summary>A template spec's network in its build VM, and in its phase hashes.</summary>
public sealed partial class NetworkTests
{
    [RequiresFact("qemu-system-x86_64", "umoci", "apt-get", "dpkg-deb", "modinfo", "setpriv", "debugfs", "clang", "root", Timeout = 900_000)]
    public async Task A_build_step_fetches_from_an_allowed_host_port_a_denied_one_fails_the_build_and_new_rules_rebuild_the_step()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(14));
        await using var allowed = new HostHttpServer("from-allowed");
        await using var denied = new HostHttpServer("from-denied");
        TemplateBuilder builder = (await _env.OpenTemplateHomeAsync("tpl-netrules", cts.Token)).Builder;
        var rules = NetworkConfig.Default with
        {
            Allow = [NetworkRule.Parse("127.0.0.1:" + allowed.Port)],
            Deny = [NetworkRule.Parse("127.0.0.1:" + denied.Port)],
        };
        Template fetch = Template.From(_env.ImageReference).Named("netrules").DiskSize("64M")
            .Run($"busybox timeout 60 busybox wget -q -O /fetched http://{NetworkConfig.Gateway}:{allowed.Port}/f && cat /fetched");

        var output = new List<string>();
        TemplateBuildResult first = await builder.BuildAsync(fetch.Network(rules).ToSpec(), new TemplateBuildOptions(), new SyncProgress(e => output.Add(e.Message ?? string.Empty)), cts.Token);
        Assert.Contains(output, line => line.Contains("from-allowed", StringComparison.Ordinal));
        Assert.False(first.Phases[1].Cached);
        Assert.Equal(1, allowed.Requests);

        // The same rules: cached. Another rule (one more allowed port): the RUN step runs again.
        TemplateBuildResult again = await builder.BuildAsync(fetch.Network(rules).ToSpec(), new TemplateBuildOptions(), null, cts.Token);
        Assert.True(again.Phases[1].Cached);
        var wider = rules with { Allow = [.. rules.Allow, NetworkRule.Parse("127.0.0.1:9")] };
        TemplateBuildResult rebuilt = await builder.BuildAsync(fetch.Network(wider).ToSpec(), new TemplateBuildOptions(), null, cts.Token);
        Assert.False(rebuilt.Phases[1].Cached);
        Assert.NotEqual(first.Phases[1].Hash, rebuilt.Phases[1].Hash);
        Assert.Equal(2, allowed.Requests);

        // A step that reaches the denied port fails the build, naming the step and the refusal.
        TemplateSpec refused = Template.From(_env.ImageReference).Named("netrules-denied").DiskSize("64M").Network(rules)
            .Run($"busybox timeout 60 busybox wget -q -O /fetched http://{NetworkConfig.Gateway}:{denied.Port}/f").ToSpec();
        TemplateStepFailedException e = await Assert.ThrowsAsync<TemplateStepFailedException>(() => builder.BuildAsync(refused, new TemplateBuildOptions(), null, cts.Token));
        Assert.Contains($"{NetworkConfig.Gateway}:{denied.Port}", e.Message, StringComparison.Ordinal);
        Assert.Contains("refused", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, denied.Requests);
        _env.AssertNothingLeft();
    }
}
