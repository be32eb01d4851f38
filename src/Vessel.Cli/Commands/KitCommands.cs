using System.CommandLine;

namespace Vessel.Cli.Commands;

internal static class KitCommands
{
    public static Command Create()
    {
        var command = new Command("kit", "Build and check the guest kit (kernel, initramfs, agent).");
        return command;
    }
}
