namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// What the <c>vessel</c> process says and returns when input is wrong or it is stopped
/// (issue 18, items 5 and 6): one line, the option or path named, never a stack trace; 143
/// after SIGTERM, 130 after SIGINT.
/// </summary>
public sealed class CliMessagesTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-cli-it-");

    public void Dispose() => _dir.Dispose();

    private static void AssertOneLineError(ProcessResult r, params string[] mentions)
    {
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.StandardError}");
        foreach (string m in mentions)
        {
            Assert.Contains(m, r.StandardError, StringComparison.Ordinal);
        }
        Assert.DoesNotContain("   at ", r.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", r.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", r.StandardError, StringComparison.Ordinal);
    }

    [Theory(Timeout = 60_000)]
    [InlineData("banana")]
    [InlineData("-1")]
    [InlineData("0")]
    [InlineData("NaN")]
    public async Task A_bad_timeout_names_the_option_and_the_expected_form(string value)
    {
        ProcessResult r = await VesselCli.RunAsync(CancellationToken.None, "sandbox", "run", _dir.Combine("none.ext4"), $"--timeout={value}", "--", "true");
        AssertOneLineError(r, "--timeout expects a positive number of seconds, e.g. 30 or 2.5", $"(got '{value}')");
        Assert.DoesNotContain("Nullable", r.StandardError, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_bad_number_option_names_the_option_and_the_expected_form()
    {
        ProcessResult r = await VesselCli.RunAsync(CancellationToken.None, "blocks", "import", _dir.Combine("x.raw"), "--block-size", "big", "--store", _dir.Combine("s"));
        AssertOneLineError(r, "--block-size", "'big' is not a whole number");
    }

    [Theory(Timeout = 60_000)]
    [InlineData("ls")]
    [InlineData("show")]
    [InlineData("rm")]
    public async Task A_missing_home_is_an_error_for_commands_that_only_read_and_nothing_is_created(string verb)
    {
        string home = _dir.Combine("nonexistent");
        string[] args = verb == "ls" ? ["template", "ls", "--home", home] : ["template", verb, "web", "--home", home];
        ProcessResult r = await VesselCli.RunAsync(CancellationToken.None, args);
        AssertOneLineError(r, $"--home '{home}' does not exist");
        Assert.False(Directory.Exists(home));
        Assert.False(File.Exists(home));
    }

    [Fact(Timeout = 120_000)]
    public async Task Sigterm_exits_143_and_sigint_130_with_one_line_each()
    {
        foreach ((string signal, int code, string says) in new[] { ("TERM", 143, "terminated (SIGTERM)"), ("INT", 130, "cancelled") })
        {
            // A registry that accepts and never answers: the build waits in a cancellable HTTP call.
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(50));
            using Process cli = VesselCli.Start("rootfs", "build", $"docker://127.0.0.1:{port}/silent:1", "--insecure", "-o", _dir.Combine("x.ext4"));
            Task<string> stderr = cli.StandardError.ReadToEndAsync(cts.Token);
            using Socket held = await listener.AcceptSocketAsync(cts.Token);
            (await ExternalProcess.RunAsync("kill", [$"-{signal}", cli.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], cts.Token)).EnsureSuccess();
            await cli.WaitForExitAsync(cts.Token);
            string err = await stderr;
            Assert.True(cli.ExitCode == code, $"SIG{signal}: exit {cli.ExitCode}: {err}");
            Assert.Equal($"vessel: {says}", err.Trim());
            Assert.Empty(Directory.EnumerateFileSystemEntries(_dir.Path));
        }
    }

    [RequiresFact("nbdinfo", Timeout = 120_000)]
    public async Task Nbd_serve_takes_a_bracketed_ipv4_mapped_address_and_a_busy_port_is_one_line()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(100));
        string image = _dir.Combine("disk.raw");
        File.WriteAllBytes(image, new byte[1 << 20]);
        using var busy = new TcpListener(IPAddress.Loopback, 0);
        busy.Start();
        int port = ((IPEndPoint)busy.LocalEndpoint).Port;

        // The probe's case: a busy port used to end in an unhandled SocketException.
        ProcessResult taken = await VesselCli.RunAsync(cts.Token, "nbd", "serve", image, "--tcp", $"[::ffff:127.0.0.1]:{port}");
        AssertOneLineError(taken, $"cannot listen on 127.0.0.1:{port}");
        busy.Stop();

        using Process server = VesselCli.Start("nbd", "serve", image, "--read-only", "--tcp", $"[::ffff:127.0.0.1]:{port}");
        ProcessResult info = default!;
        for (int i = 0; i < 200; i++)
        {
            info = await ExternalProcess.RunAsync("nbdinfo", ["--size", $"nbd://127.0.0.1:{port}"], cts.Token);
            if (info.ExitCode == 0)
            {
                break;
            }
            await Task.Delay(100, cts.Token);
        }
        Assert.True(info.ExitCode == 0, info.StandardError);
        Assert.Equal("1048576", info.StandardOutput.Trim());
        (await ExternalProcess.RunAsync("kill", ["-TERM", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], cts.Token)).EnsureSuccess();
        await server.WaitForExitAsync(cts.Token);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_directory_given_for_a_file_says_it_is_a_directory()
    {
        string dir = _dir.Combine("adir");
        Directory.CreateDirectory(dir);
        ProcessResult r = await VesselCli.RunAsync(CancellationToken.None, "rootfs", "check", dir);
        AssertOneLineError(r, $"image '{dir}' is a directory");
        ProcessResult import = await VesselCli.RunAsync(CancellationToken.None, "blocks", "import", dir, "--store", _dir.Combine("store"));
        AssertOneLineError(import, $"image '{dir}' is a directory");
    }

}
