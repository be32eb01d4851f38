using System.CommandLine;

namespace Vessel.Cli.Commands;

internal static class BlocksCommands
{
    public static Command Create()
    {
        var command = new Command("blocks", "Work on the layered block store.");
        return command;
    }
}
