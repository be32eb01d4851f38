using System.CommandLine;

namespace Vessel.Cli.Commands;

internal static class SandboxCommands
{
    public static Command Create()
    {
        var command = new Command("sandbox", "Run commands in microVM sandboxes.");
        return command;
    }
}
