using System.CommandLine;

namespace Vessel.Cli.Commands;

internal static class ContainerdCommands
{
    public static Command Create()
    {
        var command = new Command("containerd", "Boot artifacts from containerd snapshot views.");
        return command;
    }
}
