using System.Data.Common;
using Microsoft.Data.Sqlite;
using Vessel.Common;

namespace Vessel.State;

/// <summary>
/// The state in a SQLite file of the home (the default). WAL mode so readers never wait for a
/// build; safe for several processes (SQLite's file locks, retried until <see cref="BusyTimeout"/>).
/// The schema version is SQLite's <c>user_version</c>; <see cref="Migrations"/>[i] takes a
/// database from version i to i + 1, all in one transaction on open.
/// </summary>
internal sealed class SqliteStateStore : StateStore
{
    public const int SchemaVersion = 5;
    public static readonly TimeSpan BusyTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Migrations[i] takes the schema from version i to i + 1 (the tables: <see cref="StateSchema"/>).</summary>
    private static readonly Func<DbConnection, CancellationToken, Task>[] Migrations =
    [
        (c, ct) => ExecuteAsync(c, StateSchema.Templates(SqlDialect.Sqlite), ct),
        (c, ct) => ExecuteAsync(c, StateSchema.Service, ct),
        async (c, ct) =>
        {
            await AddBuildOwnerColumnAsync(c, ct);
            await ExecuteAsync(c, StateSchema.Lost, ct);
        },
        (c, ct) => ExecuteAsync(c, StateSchema.Nodes(SqlDialect.Sqlite), ct),
        (c, ct) => ExecuteAsync(c, StateSchema.RemoteSnapshot, ct),
    ];

    private readonly string _path;
    private readonly string _connectionString;

    private SqliteStateStore(string path)
    {
        _path = path;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            DefaultTimeout = (int)BusyTimeout.TotalSeconds,
            Pooling = false, // no pooled handle keeps the file open after the caller is done
        }.ToString();
    }

    public override string Location => _path;

    public static SqliteStateStore Create(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return new SqliteStateStore(path);
    }

    private protected override async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await using DbConnection c = await ConnectAsync(cancellationToken);
        await ExecuteAsync(c, "PRAGMA journal_mode=WAL;", cancellationToken);
        await using DbTransaction tx = await c.BeginTransactionAsync(cancellationToken);
        long version = (long)(await ScalarAsync(c, "PRAGMA user_version;", cancellationToken))!;
        if (version > SchemaVersion)
        {
            throw new VesselException(VesselErrorReason.Unsupported, $"state database {_path} has schema version {version}; this Vessel knows version {SchemaVersion}. Upgrade Vessel.");
        }
        for (long v = version; v < SchemaVersion; v++)
        {
            await Migrations[v](c, cancellationToken);
        }
        await ExecuteAsync(c, $"PRAGMA user_version = {SchemaVersion};", cancellationToken);
        await tx.CommitAsync(cancellationToken);
    }

    private protected override async Task<DbConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        var c = new SqliteConnection(_connectionString);
        try
        {
            await c.OpenAsync(cancellationToken);
            return c;
        }
        catch (SqliteException e)
        {
            await c.DisposeAsync();
            throw new VesselException(VesselErrorReason.Unavailable, $"cannot open the state database {_path}: {e.Message}", e);
        }
    }

    /// <summary>builds.owner, added where missing (an earlier Vessel added it without a schema version).</summary>
    private static async Task AddBuildOwnerColumnAsync(DbConnection c, CancellationToken cancellationToken)
    {
        if ((long)(await ScalarAsync(c, "SELECT COUNT(*) FROM pragma_table_info('builds') WHERE name = 'owner'", cancellationToken))! == 0)
        {
            await ExecuteAsync(c, StateSchema.BuildOwner, cancellationToken);
        }
    }
}
