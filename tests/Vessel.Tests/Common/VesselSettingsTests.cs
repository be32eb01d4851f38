namespace Vessel.Tests.Common;

public sealed class VesselSettingsTests
{
    [Fact]
    public void Reads_every_variable_once_from_the_environment_it_is_given()
    {
        var env = new Dictionary<string, string>
        {
            ["VESSEL_HOME"] = "/srv/vessel",
            ["VESSEL_ACCEL"] = "tcg",
            ["VESSEL_AGENT_DIR"] = "/opt/agent",
            ["VESSEL_API_KEY"] = "k",
            ["VESSEL_PROFILE"] = "1",
        };
        VesselSettings settings = VesselSettings.FromEnvironment(n => env.GetValueOrDefault(n));
        Assert.Equal("/srv/vessel", settings.Home.Root);
        Assert.Equal("tcg", settings.Accelerator);
        Assert.Equal("/opt/agent", settings.AgentDirectory);
        Assert.Equal("k", settings.ApiKey);
        Assert.True(settings.Profile);
        Assert.Null(settings.ContainerdSnapshotView);
    }

    [Fact]
    public void Empty_variables_count_as_unset_and_the_home_defaults_by_user()
    {
        VesselSettings settings = VesselSettings.FromEnvironment(n => n == "VESSEL_HOME" ? "" : null);
        string expected = VesselHome.DefaultRoot(VesselSettings.IsRoot, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));
        Assert.Equal(expected, settings.Home.Root);
        Assert.Equal("/var/lib/vessel", VesselHome.DefaultRoot(isRoot: true, "/root"));
        Assert.Equal("/home/u/.local/share/vessel", VesselHome.DefaultRoot(isRoot: false, "/home/u"));
    }

    [Fact]
    public void Home_names_every_path_under_its_root()
    {
        var home = new VesselHome("/srv/v/../vessel");
        Assert.Equal("/srv/vessel", home.Root);
        Assert.Equal("/srv/vessel/state.db", home.StateDatabase);
        Assert.Equal("/srv/vessel/sandboxes/abc", home.Sandbox("abc"));
        Assert.All(new[] { home.Blocks, home.Kits, home.Sandboxes, home.Snapshots, home.Work, home.Locks, home.Images, home.Socket },
            p => Assert.StartsWith("/srv/vessel/", p, StringComparison.Ordinal));
    }
}
