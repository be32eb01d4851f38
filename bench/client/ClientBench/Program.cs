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
/// rounds (ABBA), so that both see the same machine load. Prints p50/p95 of each phase.
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
        using (var request = new HttpRequestMessage(HttpMethod.Post, $"sandboxes/{id}/commands") { Content = Json("""{"cmd":"true"}""") })
        using (HttpResponseMessage run = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
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
        double exec = sw.Elapsed.TotalMilliseconds - create;
        using var killed = await http.DeleteAsync($"sandboxes/{id}");
        killed.EnsureSuccessStatusCode();
        double total = sw.Elapsed.TotalMilliseconds;
        return [create, exec, total - create - exec, total];
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

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
