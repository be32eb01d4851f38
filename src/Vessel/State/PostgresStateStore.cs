using System.Collections.Concurrent;
using System.Data.Common;
using Npgsql;
using Vessel.Common;

namespace Vessel.State;

/// <summary>
/// The state in PostgreSQL: one database the nodes of a cluster share (docs/cluster.md). The
/// location is a URL, <c>postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?host=/socket/dir]</c>
/// (libpq's form; <c>host=</c> names a unix socket directory), or an Npgsql connection string
/// (<c>Host=...;Database=...</c>). Migrations are versioned rows of <c>vessel_schema</c>, applied
/// on open in one transaction under an advisory lock, so nodes starting together migrate once.
/// </summary>
internal sealed class PostgresStateStore : StateStore
{
    public const int SchemaVersion = 3;

    /// <summary>The advisory lock key migrations hold ("vessel" in ASCII).</summary>
    private const long MigrationLock = 0x76_65_73_73_65_6c;

    /// <summary>Migrations[i] takes the schema from version i to i + 1 (the tables: <see cref="StateSchema"/>).</summary>
    private static readonly string[] Migrations =
    [
        // Version 1: every table of SQLite's version 3.
        StateSchema.Templates(SqlDialect.Postgres) + StateSchema.BuildOwner + StateSchema.Service + StateSchema.Lost,
        // Version 2 (SQLite's version 4), with Orleans' AdoNet clustering tables (vessel serve --cluster) as dotnet/orleans ships them (MIT, third_party/orleans).
        StateSchema.Nodes(SqlDialect.Postgres) + OrleansScript("PostgreSQL-Main.sql") + OrleansScript("PostgreSQL-Clustering.sql"),
        // Version 3 (SQLite's version 5): a paused sandbox's snapshot in the cluster's bucket.
        StateSchema.RemoteSnapshot,
    ];

    private static readonly ConcurrentDictionary<string, NpgsqlDataSource> s_dataSources = new(StringComparer.Ordinal);
    private readonly NpgsqlDataSource _dataSource;
    private readonly string _display;

    private PostgresStateStore(NpgsqlConnectionStringBuilder builder)
    {
        ConnectionString = builder.ConnectionString;
        _display = $"postgres://{builder.Username}@{builder.Host}:{builder.Port}/{builder.Database}";
        // One pool per database for the life of the process: stores are opened often and never disposed.
        _dataSource = s_dataSources.GetOrAdd(builder.ConnectionString, NpgsqlDataSource.Create);
    }

    public override string Location => _display;

    /// <summary>The Npgsql connection string of this database (with its password): what Orleans' AdoNet clustering connects with.</summary>
    public string ConnectionString { get; }

    /// <summary>Whether <paramref name="location"/> names PostgreSQL rather than a SQLite file.</summary>
    public static bool IsLocation(string location)
        => location.StartsWith("postgres://", StringComparison.Ordinal) || location.StartsWith("postgresql://", StringComparison.Ordinal)
            || location.Contains("Host=", StringComparison.OrdinalIgnoreCase);

    public static PostgresStateStore Create(string location) => new(Parse(location));

    /// <summary>The connection settings of a <c>postgres://</c> URL or an Npgsql connection string; a clear error for anything else.</summary>
    public static NpgsqlConnectionStringBuilder Parse(string location)
    {
        if (!location.StartsWith("postgres://", StringComparison.Ordinal) && !location.StartsWith("postgresql://", StringComparison.Ordinal))
        {
            try
            {
                return new NpgsqlConnectionStringBuilder(location);
            }
            catch (ArgumentException e)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"the PostgreSQL connection string is not valid: {e.Message}", e);
            }
        }
        string rest = location[(location.IndexOf("://", StringComparison.Ordinal) + 3)..];
        string query = string.Empty;
        if (rest.IndexOf('?', StringComparison.Ordinal) is int q and >= 0)
        {
            (rest, query) = (rest[..q], rest[(q + 1)..]);
        }
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        string database = slash >= 0 ? Uri.UnescapeDataString(rest[(slash + 1)..]) : string.Empty;
        string authority = slash >= 0 ? rest[..slash] : rest;
        var builder = new NpgsqlConnectionStringBuilder { Database = database.Length > 0 ? database : "vessel" };
        if (authority.LastIndexOf('@') is int at and >= 0)
        {
            string user = authority[..at];
            authority = authority[(at + 1)..];
            int colon = user.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon >= 0 ? user[..colon] : user);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(user[(colon + 1)..]);
            }
        }
        if (authority.Length > 0)
        {
            int colon = authority.LastIndexOf(':');
            builder.Host = colon >= 0 ? authority[..colon] : authority;
            if (colon >= 0)
            {
                builder.Port = int.TryParse(authority[(colon + 1)..], out int port) && port is > 0 and < 65536 ? port
                    : throw new VesselException(VesselErrorReason.InvalidInput, $"the port in the PostgreSQL URL is not a port number: '{authority[(colon + 1)..]}'");
            }
        }
        foreach (string pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            string key = eq >= 0 ? pair[..eq] : pair;
            string value = eq >= 0 ? Uri.UnescapeDataString(pair[(eq + 1)..]) : string.Empty;
            switch (key)
            {
                case "host": builder.Host = value; break;
                case "port": builder.Port = int.TryParse(value, out int p) ? p : throw new VesselException(VesselErrorReason.InvalidInput, $"port={value} in the PostgreSQL URL is not a number"); break;
                default: throw new VesselException(VesselErrorReason.InvalidInput, $"the PostgreSQL URL has a parameter Vessel does not know: '{key}' (known: host, port)");
            }
        }
        if (string.IsNullOrEmpty(builder.Host))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "the PostgreSQL URL names no host: give HOST[:PORT] or ?host=/socket/directory");
        }
        return builder;
    }

    private protected override async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await using DbTransaction tx = await c.BeginTransactionAsync(cancellationToken);
        await ExecuteAsync(c, $"SELECT pg_advisory_xact_lock({MigrationLock});", cancellationToken);
        await ExecuteAsync(c, "CREATE TABLE IF NOT EXISTS vessel_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);", cancellationToken);
        int version = (int)(await ScalarAsync(c, "SELECT COALESCE(MAX(version), 0) FROM vessel_schema;", cancellationToken))!;
        if (version > SchemaVersion)
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"state database {_display} has schema version {version}; this Vessel knows version {SchemaVersion}. Upgrade Vessel.");
        }
        for (int v = version; v < SchemaVersion; v++)
        {
            await ExecuteAsync(c, Migrations[v], cancellationToken);
            await using DbCommand record = Command(c, "INSERT INTO vessel_schema (version, applied_at) VALUES (@v, @t)",
                ("@v", v + 1), ("@t", Text(DateTimeOffset.UtcNow)));
            await record.ExecuteNonQueryAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
    }

    private static string OrleansScript(string name)
    {
        using Stream stream = typeof(PostgresStateStore).Assembly.GetManifestResourceStream("Vessel.State.Orleans." + name)
            ?? throw new InvalidOperationException($"the embedded resource Vessel.State.Orleans.{name} is missing from the build");
        using var reader = new StreamReader(stream);
        return "\n" + reader.ReadToEnd();
    }

    private protected override async Task<DbConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _dataSource.OpenConnectionAsync(cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            throw new VesselException(VesselErrorReason.Unavailable, $"cannot open the state database {_display}: {e.Message}", e);
        }
    }
}
