using Vessel.IntegrationTests.Network;
using Vessel.IntegrationTests.Sandboxes;

namespace Vessel.IntegrationTests.Service;

/// <summary>
/// A pod's network through `vessel serve`: the pod's rules (one network per pod: its containers
/// share the VM's network namespace), loopback inside and between containers, a container's
/// port forwarded to the host.
/// </summary>
[Collection(DaemonCollection.Name)]
public sealed class PodNetworkTests(DaemonFixture daemon)
{
    private async Task<string> ShAsync(string id, string container, string script)
    {
        CommandRun run = await daemon.ExecAsync(id, DaemonFixture.Sh(script, container));
        return run.Stdout + run.Stderr + "exit=" + run.Exit["exitCode"];
    }

    [DaemonFact("clang", "busybox-image", Timeout = 900_000)]
    public async Task A_pod_with_rules_talks_over_127_0_0_1_within_and_between_containers_reaches_only_the_allowed_host_port_and_forwards_a_port()
    {
        await using var allowed = new HostHttpServer("from-allowed");
        await using var other = new HostHttpServer("from-other");
        string id = await daemon.CreateSandboxAsync(new
        {
            containers = DaemonFixture.WebAndSidePod("sh", "-c", "mkdir -p /www && echo in-pod > /www/f && exec busybox httpd -f -p 8080 -h /www"),
            rootfs = "block",
            upperMb = 16,
            timeoutSeconds = 900,
            network = new { outbound = "off", allow = new[] { "127.0.0.1:" + allowed.Port } },
        });
        try
        {
            // A server and a client in one container, on 127.0.0.1 (lo is up in the container).
            string own = await ShAsync(id, "side", "(busybox nc -l -p 9001 -e /bin/echo side-lo </dev/null >/dev/null 2>&1 &); busybox sleep 1; busybox nc 127.0.0.1 9001 </dev/null; busybox cat /sys/class/net/lo/operstate");
            Assert.Contains("side-lo", own, StringComparison.Ordinal);
            Assert.EndsWith("exit=0", own, StringComparison.Ordinal);
            // The containers share the VM's network namespace: side reaches web's server on 127.0.0.1.
            string between = "";
            for (int i = 0; i < 50 && !between.Contains("in-pod", StringComparison.Ordinal); i++)
            {
                between = await ShAsync(id, "side", "busybox timeout 10 busybox wget -q -O - http://127.0.0.1:8080/f");
            }
            Assert.Contains("in-pod", between, StringComparison.Ordinal);
            // The pod's rules: the allowed host port through host.vessel.internal's address, nothing else of the host.
            Assert.Contains("from-allowed", await ShAsync(id, "side", $"busybox timeout 30 busybox wget -q -O - http://10.0.2.254:{allowed.Port}/f"), StringComparison.Ordinal);
            foreach (string url in new[] { $"http://10.0.2.254:{other.Port}/f", $"http://10.0.2.2:{other.Port}/f", $"http://10.0.2.2:{daemon.Port}/sandboxes" })
            {
                string refused = await ShAsync(id, "web", $"busybox timeout 10 busybox wget -q -O - {url}");
                Assert.DoesNotContain("exit=0", refused, StringComparison.Ordinal);
            }
            Assert.Equal(0, other.Requests);
            // A container's port, forwarded to the host.
            JsonNode port = await DaemonFixture.JsonAsync(await daemon.Unix.PostAsync($"/sandboxes/{id}/ports/8080", null), HttpStatusCode.OK);
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            Assert.Equal("in-pod\n", await http.GetStringAsync($"http://{port["host"]!.GetValue<string>()}/f"));
        }
        finally
        {
            await daemon.Unix.DeleteAsync($"/sandboxes/{id}");
        }
        Assert.Empty(SandboxEnvironment.QemusNaming(daemon.Home));
    }
}
