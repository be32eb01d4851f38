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

    /// <summary>
    /// The home of a command that only reads or removes: a missing one is an error, never created
    /// (a typo in --home must not leave an empty state.db behind).
    /// </summary>
    public static VesselHome GetExisting(ParseResult parse, Option<string> option)
    {
        VesselHome home = Get(parse, option);
        if (!home.Exists)
        {
            throw new VesselException(VesselErrorReason.NotFound, File.Exists(home.Root)
                ? $"--home '{home.Root}' is a file, not a directory"
                : $"--home '{home.Root}' does not exist (nothing there yet; commands that build or run create it)");
        }
        return home;
    }
}
