using Npgsql;

namespace Vessel.IntegrationTests.State;

/// <summary>How VESSEL_STATE names a database: a libpq-style URL or an Npgsql connection string, else a SQLite path.</summary>
public sealed class StateLocationTests
{
    [Fact]
    public void A_url_with_a_socket_directory_names_user_password_database_and_port()
    {
        NpgsqlConnectionStringBuilder b = PostgresStateStore.Parse("postgres://vessel:p%40ss@/state?host=%2Frun%2Fpg&port=6543");
        Assert.Equal(("vessel", "p@ss", "state", "/run/pg", 6543), (b.Username, b.Password, b.Database, b.Host, b.Port));
        b = PostgresStateStore.Parse("postgresql://node@db.internal:5433/vessel");
        Assert.Equal(("node", "db.internal", 5433, "vessel"), (b.Username, b.Host, b.Port, b.Database));
        Assert.Equal("/run/pg", PostgresStateStore.Parse("Host=/run/pg;Database=x;Username=y").Host);
    }

    [Theory]
    [InlineData("postgres://u@h:notaport/db", "not a port number")]
    [InlineData("postgres://u@h/db?sslmode=require", "'sslmode'")]
    [InlineData("postgres://u@/db", "names no host")]
    [InlineData("Host=h;Bogus Key=1", "not valid")]
    public void A_malformed_location_is_refused_saying_what_is_wrong(string location, string expected)
    {
        VesselException e = Assert.Throws<VesselException>(() => PostgresStateStore.Parse(location));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Vessel_state_picks_the_database_and_the_home_file_is_the_default()
    {
        var home = new VesselHome("/tmp/vessel-home-x");
        Assert.Equal(home.StateDatabase, VesselSettings.FromEnvironment(_ => null).StateLocation(home));
        VesselSettings shared = VesselSettings.FromEnvironment(n => n == "VESSEL_STATE" ? "postgres://v@/s?host=/run/pg" : null);
        Assert.Equal("postgres://v@/s?host=/run/pg", shared.StateLocation(home));
        Assert.True(PostgresStateStore.IsLocation(shared.StateLocation(home)));
        Assert.False(PostgresStateStore.IsLocation(home.StateDatabase));
    }
}
