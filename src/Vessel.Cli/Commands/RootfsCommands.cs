using System.CommandLine;

namespace Vessel.Cli.Commands;

internal static class RootfsCommands
{
    public static Command Create()
    {
        var command = new Command("rootfs", "Build ext4 root filesystems from container images.");
        return command;
    }
}
