using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Vessel.Client;

namespace ClientBench;

/// <summary>
/// Create + run <c>true</c> + kill through Vessel.Client and through hand-written HTTP requests
/// (the raw API: JSON strings, the NDJSON read line by line) against one daemon, in interleaved
/// rounds (ABBA), so that both see the same machine load. Prints p50/p95 of each phase, the p50
/// of the paired differences, and the SDK's cost on one sandbox without VM starts (GET, exec).
/// Usage: ClientBench SOCKET TEMPLATE [ROUNDS]
/// </summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        string socket = args[0];
        string template = args[1];
        int rounds = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 20;
        await using var client = new VesselClient(new VesselClientOptions { SocketPath = socket });
        using var raw = new HttpClient(new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), ct);
                return new NetworkStream(s, ownsSocket: true);
            },
        })
        { BaseAddress = new Uri("http://localhost/") };

        // One warm-up round each: JIT, connection pools, the template's snapshot in the page cache.
        await SdkRoundAsync(client, template);
        await RawRoundAsync(raw, template);
        var sdk = new List<double[]>();
        var api = new List<double[]>();
        for (int i = 0; i < rounds; i++)
        {
            if (i % 2 == 0)
            {
                sdk.Add(await SdkRoundAsync(client, template));
                api.Add(await RawRoundAsync(raw, template));
            }
            else
            {
                api.Add(await RawRoundAsync(raw, template));
                sdk.Add(await SdkRoundAsync(client, template));
            }
        }
        Console.WriteLine($"{rounds} rounds, interleaved; ms          p50 create   p50 exec   p50 kill   p50 total   p95 total");
        Report("raw API (HttpClient, hand-written JSON)", api);
        Report("Vessel.Client SDK", sdk);
        double d50 = Percentile(sdk.Select(r => r[3]), 50) - Percentile(api.Select(r => r[3]), 50);
        double dExec = Percentile(sdk.Select(r => r[1]), 50) - Percentile(api.Select(r => r[1]), 50);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SDK - raw: p50 total {d50:+0.0;-0.0} ms, p50 exec {dExec:+0.00;-0.00} ms"));
        // The same rounds, paired: each SDK round against the raw round run beside it, so that
        // the VM's round-to-round spread (tens of ms under TCG) cancels instead of adding up.
        // Whichever goes second in a pair may gain or lose from the first (a VM still being
        // reaped): the p50 of the pairs with the SDK first and of those with raw first are
        // averaged, so that order effect cancels too.
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"paired (SDK round - raw round beside it, order-balanced p50): create {Paired(sdk, api, 0):+0.00;-0.00} ms, exec {Paired(sdk, api, 1):+0.00;-0.00} ms, kill {Paired(sdk, api, 2):+0.00;-0.00} ms, total {Paired(sdk, api, 3):+0.00;-0.00} ms"));
        await OverheadAsync(client, raw, template, rounds * 10);
        return 0;
    }

    private static async Task<double[]> SdkRoundAsync(VesselClient client, string template)
    {
        var sw = Stopwatch.StartNew();
        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions { Template = template });
        double create = sw.Elapsed.TotalMilliseconds;
        CommandResult r = await sandbox.Commands.RunAsync("true");
        double exec = sw.Elapsed.TotalMilliseconds - create;
        if (r.ExitCode != 0)
        {
            throw new InvalidOperationException("true exited " + r.ExitCode);
        }
        await sandbox.KillAsync();
        double total = sw.Elapsed.TotalMilliseconds;
        return [create, exec, total - create - exec, total];
    }

    private static async Task<double[]> RawRoundAsync(HttpClient http, string template)
    {
        var sw = Stopwatch.StartNew();
        using var created = await http.PostAsync("sandboxes", Json($$"""{"template":"{{template}}"}"""));
        created.EnsureSuccessStatusCode();
        string id;
        using (JsonDocument doc = JsonDocument.Parse(await created.Content.ReadAsStringAsync()))
        {
            id = doc.RootElement.GetProperty("sandboxId").GetString()!;
        }
        double create = sw.Elapsed.TotalMilliseconds;
        await RawExecAsync(http, id);
        double exec = sw.Elapsed.TotalMilliseconds - create;
        using var killed = await http.DeleteAsync($"sandboxes/{id}");
        killed.EnsureSuccessStatusCode();
        double total = sw.Elapsed.TotalMilliseconds;
        return [create, exec, total - create - exec, total];
    }

    /// <summary>
    /// The SDK's own cost without a VM start in the way: on one sandbox, interleaved, GET the
    /// sandbox and run <c>true</c> through each path.
    /// </summary>
    private static async Task OverheadAsync(VesselClient client, HttpClient raw, string template, int rounds)
    {
        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions { Template = template });
        try
        {
            var sdk = new List<double[]>();
            var api = new List<double[]>();
            for (int i = 0; i < rounds; i++)
            {
                if (i % 2 == 0)
                {
                    sdk.Add([await TimeAsync(() => sandbox.RefreshAsync()), await TimeAsync(() => sandbox.Commands.RunAsync("true"))]);
                    api.Add([await TimeAsync(() => RawGetAsync(raw, sandbox.SandboxId)), await TimeAsync(() => RawExecAsync(raw, sandbox.SandboxId))]);
                }
                else
                {
                    api.Add([await TimeAsync(() => RawGetAsync(raw, sandbox.SandboxId)), await TimeAsync(() => RawExecAsync(raw, sandbox.SandboxId))]);
                    sdk.Add([await TimeAsync(() => sandbox.RefreshAsync()), await TimeAsync(() => sandbox.Commands.RunAsync("true"))]);
                }
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"one sandbox, {rounds} interleaved rounds, p50 ms: GET raw {Percentile(api.Select(r => r[0]), 50):0.000} SDK {Percentile(sdk.Select(r => r[0]), 50):0.000}; exec true raw {Percentile(api.Select(r => r[1]), 50):0.00} SDK {Percentile(sdk.Select(r => r[1]), 50):0.00}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"paired SDK - raw, p50: GET {Paired(sdk, api, 0):+0.000;-0.000} ms, exec true {Paired(sdk, api, 1):+0.000;-0.000} ms"));
        }
        finally
        {
            await sandbox.KillAsync();
        }
    }

    private static async Task<double> TimeAsync(Func<Task> action)
    {
        var sw = Stopwatch.StartNew();
        await action();
        return sw.Elapsed.TotalMilliseconds;
    }

    private static async Task RawGetAsync(HttpClient http, string id)
    {
        using HttpResponseMessage got = await http.GetAsync($"sandboxes/{id}");
        got.EnsureSuccessStatusCode();
        using JsonDocument doc = JsonDocument.Parse(await got.Content.ReadAsStringAsync());
        _ = doc.RootElement.GetProperty("state").GetString();
    }

    private static async Task RawExecAsync(HttpClient http, string id)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"sandboxes/{id}/commands") { Content = Json("""{"cmd":"true"}""") };
        using HttpResponseMessage run = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        run.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await run.Content.ReadAsStreamAsync());
        string? last = null;
        while (await reader.ReadLineAsync() is string line)
        {
            last = line;
        }
        if (last is null || !last.Contains("\"exit\"", StringComparison.Ordinal))
        {
            throw new InvalidOperationException("no exit line: " + last);
        }
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>The p50 of SDK - raw over the pairs, order-balanced: the mean of the p50 over even pairs (SDK first) and over odd ones (raw first).</summary>
    private static double Paired(List<double[]> sdk, List<double[]> api, int column)
    {
        double[] d = sdk.Zip(api, (s, r) => s[column] - r[column]).ToArray();
        double[] sdkFirst = d.Where((_, i) => i % 2 == 0).ToArray();
        double[] rawFirst = d.Where((_, i) => i % 2 == 1).ToArray();
        return rawFirst.Length == 0 ? Percentile(sdkFirst, 50) : (Percentile(sdkFirst, 50) + Percentile(rawFirst, 50)) / 2;
    }

    private static void Report(string name, List<double[]> rows)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-40} {Percentile(rows.Select(r => r[0]), 50),10:0.0} {Percentile(rows.Select(r => r[1]), 50),10:0.00} {Percentile(rows.Select(r => r[2]), 50),10:0.0} {Percentile(rows.Select(r => r[3]), 50),11:0.0} {Percentile(rows.Select(r => r[3]), 95),11:0.0}"));
    }

    /// <summary>Nearest-rank percentile.</summary>
    private static double Percentile(IEnumerable<double> values, int p)
    {
        double[] sorted = values.Order().ToArray();
        int rank = (int)Math.Ceiling(p / 100.0 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
