using System.CommandLine;

namespace Vessel.Cli.Commands;

internal static class TemplateCommands
{
    public static Command Create()
    {
        var command = new Command("template", "Build and manage templates.");
        return command;
    }
}
