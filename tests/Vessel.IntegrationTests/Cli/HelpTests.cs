namespace Vessel.IntegrationTests.Cli;

public sealed class HelpTests
{
    [Fact(Timeout = 60_000)]
    public async Task Help_lists_every_command_group()
    {
        var result = await VesselCli.RunAsync(CancellationToken.None, "--help");
        Assert.Equal(0, result.ExitCode);
        foreach (string group in new[] { "rootfs", "blocks", "nbd", "kit", "sandbox", "template", "containerd", "gc" })
        {
            Assert.Contains(group, result.StandardOutput, StringComparison.Ordinal);
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task Unknown_command_fails_with_a_message()
    {
        var result = await VesselCli.RunAsync(CancellationToken.None, "no-such-command");
        Assert.NotEqual(0, result.ExitCode);
        Assert.NotEmpty(result.StandardError);
    }
}
