using System.CommandLine;
using Vessel.Cli.Commands;
using Vessel.Cli.Serve;

namespace Vessel.Cli;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        // HelpName: the installed command is `vessel`, whatever the assembly is called.
        var root = new RootCommand("Vessel: microVM sandboxes from container images.") { HelpName = "vessel" };
        // One file per module adds its commands; keep this list in module order.
        root.Subcommands.Add(RootfsCommands.Create());
        root.Subcommands.Add(BlocksCommands.Create());
        root.Subcommands.Add(NbdCommands.Create());
        root.Subcommands.Add(KitCommands.Create());
        root.Subcommands.Add(SandboxCommands.Create());
        root.Subcommands.Add(TemplateCommands.Create());
        root.Subcommands.Add(ContainerdCommands.Create());
        root.Subcommands.Add(GcCommands.Create());
        root.Subcommands.Add(ImagesCommands.Create());
        root.Subcommands.Add(ServeCommands.Serve());
        root.Subcommands.Add(KeysCommands.Create());
        return await CliRunner.InvokeAsync(root, args);
    }
}
