using System.Diagnostics;
using System.Globalization;
using Vessel.Agent;
using Vessel.Guest;
using Vessel.Sandboxes;

// Cold start breakdown, exec round trip and file throughput of one sandbox (TCG on this machine).
// Usage: Vessel.Bench ROOTFS STATE_DIR [boots]
//        Vessel.Bench --pss ROOTFS IMAGE STATE_DIR [memory MiB]   host memory per sandbox (Pss.cs)
if (args[0] == "--tsc")
{
    // The peer boot in bench.sh announces the same TSC frequency as Vessel does.
    Console.WriteLine(Vessel.Vmm.HostTsc.FrequencyKhz?.ToString(CultureInfo.InvariantCulture) ?? string.Empty);
    return;
}
if (args[0] == "--pss")
{
    await Vessel.Bench.Pss.RunAsync(args[1], args[2], args[3], args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 256);
    return;
}
string rootfs = args[0];
string state = args[1];
int boots = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 3;
GuestKit kit = await new KitBuilder(new KitOptions()).EnsureAsync(CancellationToken.None);
var manager = new SandboxManager(state, kit);
var inv = CultureInfo.InvariantCulture;

for (int i = 0; i < boots; i++)
{
    var clock = Stopwatch.StartNew();
    await using Sandbox sandbox = await manager.CreateAsync(new SandboxOptions { RootfsPath = rootfs }, CancellationToken.None);
    TimeSpan ready = clock.Elapsed;
    ExitStatus first = await sandbox.ExecAsync(new ExecRequest(["true"]), null, null, null, CancellationToken.None);
    TimeSpan firstExec = clock.Elapsed - ready;
    SandboxTimings t = sandbox.Timings;
    Console.WriteLine(string.Create(inv,
        $"boot {i + 1}: vmm started {t.VmmStarted.TotalMilliseconds:0} ms | guest init at uptime {t.GuestInitStarted?.TotalMilliseconds:0} ms | agent process at {t.GuestAgentStarted.TotalMilliseconds:0} ms | agent ready at {t.GuestAgentReady.TotalMilliseconds:0} ms (host {t.AgentReady.TotalMilliseconds:0} ms) | first exec {firstExec.TotalMilliseconds:0} ms | total {clock.Elapsed.TotalMilliseconds:0} ms"));
    if (i < boots - 1)
    {
        continue;
    }

    var latencies = new List<double>();
    for (int n = 0; n < 20; n++)
    {
        var c = Stopwatch.StartNew();
        await sandbox.ExecAsync(new ExecRequest(["true"]), null, null, null, CancellationToken.None);
        latencies.Add(c.Elapsed.TotalMilliseconds);
    }
    latencies.Sort();
    Console.WriteLine(string.Create(inv, $"exec round trip (true, 20 runs): median {latencies[10]:0.0} ms, min {latencies[0]:0.0} ms, max {latencies[^1]:0.0} ms"));

    var health = new List<double>();
    for (int n = 0; n < 20; n++)
    {
        var c = Stopwatch.StartNew();
        await sandbox.Agent.HealthAsync(CancellationToken.None);
        health.Add(c.Elapsed.TotalMilliseconds);
    }
    health.Sort();
    Console.WriteLine(string.Create(inv, $"health round trip (protocol only, 20 runs): median {health[10]:0.00} ms"));

    byte[] data = new byte[50 << 20];
    new Random(1).NextBytes(data);
    var w = Stopwatch.StartNew();
    await sandbox.Agent.WriteFileAsync("/root/bench.bin", new MemoryStream(data), 0x1A4, CancellationToken.None);
    double writeMiBs = 50 / w.Elapsed.TotalSeconds;
    var r = Stopwatch.StartNew();
    await sandbox.Agent.ReadFileAsync("/root/bench.bin", Stream.Null, CancellationToken.None);
    double readMiBs = 50 / r.Elapsed.TotalSeconds;
    var g = Stopwatch.StartNew();
    await sandbox.ExecAsync(new ExecRequest(["sh", "-c", "cat /root/bench.bin"]), null, Stream.Null, null, CancellationToken.None);
    double catMiBs = 50 / g.Elapsed.TotalSeconds;
    Console.WriteLine(string.Create(inv, $"files over the agent channel, 50 MiB: write {writeMiBs:0.0} MiB/s, read {readMiBs:0.0} MiB/s; same bytes as exec stdout (cat): {catMiBs:0.0} MiB/s"));
}
