using System.CommandLine;
using Vessel.Common;

namespace Vessel.Cli.Commands;

/// <summary>The one --home option every command that keeps state takes (<see cref="VesselHome"/>).</summary>
internal static class HomeOption
{
    public static Option<string> Create() => new("--home")
    {
        Description = "Vessel's home: kits/, blocks/, state.db, sandboxes/, snapshots/ (default: $VESSEL_HOME, else "
            + VesselHome.SystemRoot + " for root and ~/.local/share/vessel for others).",
        DefaultValueFactory = _ => VesselSettings.Current.Home.Root,
        HelpName = "DIR",
    };

    public static VesselHome Get(ParseResult parse, Option<string> option) => new(parse.GetValue(option)!);
}
