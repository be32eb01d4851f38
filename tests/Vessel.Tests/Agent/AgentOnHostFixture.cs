namespace Vessel.Tests.Agent;

/// <summary>
/// The real published agent, run on the host with --listen-unix over the extracted busybox test image
/// rootfs: the same code that runs in the guest, without booting a VM (needs root for chroot).
/// </summary>
public sealed class AgentOnHostFixture : IAsyncLifetime
{
    public const string Token = "test-token-0123456789";

    private Process? _agent;

    public TempDirectory? Work { get; private set; }

    public string Root => Work!.Combine("root");

    public string Socket => Work!.Combine("agent.sock");

    public static bool Available => Requirements.FirstMissing(["root", "busybox-image", "tar"]) is null && File.Exists(AgentPath);

    public static string AgentPath => Path.Combine(AppContext.BaseDirectory, "agent", "vessel-agent");

    public async Task InitializeAsync()
    {
        if (!Available)
        {
            return;
        }
        Work = TempDirectory.Create("vessel-agent-test-");
        Directory.CreateDirectory(Root);
        await ExternalProcess.RunAsync("tar", ["-xzf", TestImages.BusyboxTarball, "-C", Root], CancellationToken.None);
        var psi = new ProcessStartInfo(AgentPath)
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (string a in new[] { "--listen-unix", Socket, "--root", Root, "--token", Token })
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["DOTNET_EnableDiagnostics"] = "0";
        _agent = Process.Start(psi)!;
        _ = _agent.StandardError.ReadToEndAsync();
        _ = _agent.StandardOutput.ReadToEndAsync();
    }

    public Task<AgentClient> ConnectAsync(string token = Token)
        => AgentClient.ConnectAsync(Socket, token, TimeSpan.FromSeconds(20), CancellationToken.None);

    public async Task DisposeAsync()
    {
        if (_agent is not null)
        {
            _agent.Kill(entireProcessTree: true);
            await _agent.WaitForExitAsync();
            _agent.Dispose();
        }
        Work?.Dispose();
    }
}
