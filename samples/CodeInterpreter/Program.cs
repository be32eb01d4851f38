using System.Diagnostics;
using Vessel.Client;

namespace CodeInterpreter;

/// <summary>
/// Runs code a model generated in a throwaway sandbox: upload the script, run it with a
/// timeout, collect its output and the file it produced, and kill the sandbox whatever happens.
/// <code>
/// dotnet run --project samples/CodeInterpreter -- --socket /var/lib/vessel/vessel.sock --template busybox
/// dotnet run --project samples/CodeInterpreter -- --host http://10.0.0.5:7070 --template busybox   # key in $VESSEL_API_KEY
/// </code>
/// </summary>
internal static class Program
{
    // What a model might have written: a computation that prints and writes a result file.
    private const string GeneratedScript = """
        #!/bin/sh
        set -e
        mkdir -p /tmp/out
        i=1; sum=0
        while [ $i -le 100 ]; do sum=$((sum + i)); i=$((i + 1)); done
        echo "sum of 1..100 = $sum"
        echo "working in $(pwd)" >&2
        printf 'n,sum\n100,%s\n' "$sum" > /tmp/out/result.csv
        """;

    // Generated code that never ends: the timeout must stop it.
    private const string RunawayScript = "while :; do :; done";

    public static async Task<int> Main(string[] args)
    {
        VesselClientOptions options = ParseOptions(args, out string template);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await using var client = new VesselClient(options);

        var clock = Stopwatch.StartNew();
        Sandbox sandbox = await client.Sandboxes.CreateAsync(new SandboxCreateOptions
        {
            Template = template,
            Timeout = TimeSpan.FromMinutes(2), // the daemon kills it even if this program dies
            Metadata = new Dictionary<string, string> { ["purpose"] = "code-interpreter-sample" },
        }, cts.Token);
        Console.WriteLine($"sandbox {sandbox.SandboxId} created in {clock.ElapsedMilliseconds} ms");
        try
        {
            await sandbox.Files.WriteAsync("/tmp/job.sh", GeneratedScript, cts.Token);
            CommandResult run = await sandbox.Commands.RunAsync("/bin/sh", ["/tmp/job.sh"],
                new CommandOptions { Timeout = TimeSpan.FromSeconds(30), Cwd = "/tmp" }, cts.Token);
            Console.Write("stdout: " + run.Stdout);
            Console.Write("stderr: " + run.Stderr);
            Console.WriteLine($"exit code: {run.ExitCode}");
            if (run.ExitCode != 0)
            {
                return 1;
            }

            string csv = await sandbox.Files.ReadAllTextAsync("/tmp/out/result.csv", cts.Token);
            Console.Write("result.csv:\n" + csv);

            CommandResult runaway = await sandbox.Commands.RunAsync("/bin/sh", ["-c", RunawayScript],
                new CommandOptions { Timeout = TimeSpan.FromSeconds(2) }, cts.Token);
            Console.WriteLine(runaway.TimedOut
                ? $"runaway script: killed by its 2 s timeout (exit code {runaway.ExitCode})"
                : $"runaway script: ended on its own?! exit code {runaway.ExitCode}");
            return runaway.TimedOut ? 0 : 1;
        }
        finally
        {
            await sandbox.KillAsync(CancellationToken.None);
            Console.WriteLine($"sandbox {sandbox.SandboxId} killed; {clock.ElapsedMilliseconds} ms in all");
        }
    }

    private static VesselClientOptions ParseOptions(string[] args, out string template)
    {
        string? socket = null, host = null;
        template = "busybox";
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--socket": socket = args[i + 1]; break;
                case "--host": host = args[i + 1]; break;
                case "--template": template = args[i + 1]; break;
                default: throw new ArgumentException($"Unknown option {args[i]}; use --socket PATH | --host URL, and --template NAME.");
            }
        }
        return host is not null
            ? new VesselClientOptions { BaseAddress = new Uri(host), ApiKey = Environment.GetEnvironmentVariable("VESSEL_API_KEY") }
            : new VesselClientOptions { SocketPath = socket ?? "/var/lib/vessel/vessel.sock" };
    }
}
