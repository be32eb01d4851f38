using System.CommandLine;

namespace Vessel.Cli.Commands;

internal static class NbdCommands
{
    public static Command Create()
    {
        var command = new Command("nbd", "Serve disk images and builds over NBD.");
        return command;
    }
}
