namespace Vessel.Common;

/// <summary>
/// Every setting Vessel takes from its environment, read once (by the CLI, at start) and passed
/// down. No other type of the host side reads a VESSEL_* variable; library types take these
/// values as options, so tests and the daemon choose them explicitly.
/// </summary>
public sealed record VesselSettings
{
    /// <summary>VESSEL_HOME: the one home (<see cref="VesselHome"/>).</summary>
    public const string HomeVariable = "VESSEL_HOME";

    /// <summary>VESSEL_ACCEL: the variable behind <see cref="Accelerator"/>.</summary>
    public const string AcceleratorVariable = "VESSEL_ACCEL";

    /// <summary>VESSEL_CONTAINERD_SNAPSHOT_VIEW: the host-wide opt-in behind <see cref="ContainerdSnapshotView"/> ("1"/"true").</summary>
    public const string ContainerdSnapshotViewVariable = "VESSEL_CONTAINERD_SNAPSHOT_VIEW";

    /// <summary>The home every command uses unless its --home says otherwise.</summary>
    public required VesselHome Home { get; init; }

    /// <summary>VESSEL_ACCEL: kvm or tcg instead of probing (null: probe).</summary>
    public string? Accelerator { get; init; }

    /// <summary>VESSEL_AGENT_DIR: the published guest agent, instead of agent/ beside the CLI.</summary>
    public string? AgentDirectory { get; init; }

    /// <summary>VESSEL_REGISTRY_PASSWORD: the password for --username on registry pulls.</summary>
    public string? RegistryPassword { get; init; }

    /// <summary>VESSEL_API_KEY: the key a client sends to a daemon listening on TCP.</summary>
    public string? ApiKey { get; init; }

    /// <summary>VESSEL_PROFILE=1: print where the time of a rootfs build went (benchmarks).</summary>
    public bool Profile { get; init; }

    /// <summary>VESSEL_CONTAINERD_SNAPSHOT_VIEW: use containerd snapshot views for boot artifacts (null: unset).</summary>
    public string? ContainerdSnapshotView { get; init; }

    /// <summary>VESSEL_SHIM_CONFIG: the shim's config file instead of /etc/vessel/shim.toml (tests point it at their own).</summary>
    public string? ShimConfig { get; init; }

    /// <summary>VESSEL_CONTAINERD_TEST_HOLD: a test seam that stops `containerd artifacts` at a named step.</summary>
    public string? ContainerdTestHold { get; init; }

    /// <summary>VESSEL_OUTBOUND: on, restrict or off, the daemon's network for sandboxes whose create request names none (null: on).</summary>
    public string? DefaultOutbound { get; init; }

    /// <summary>VESSEL_SERVICE_TEST_CRASH: a test seam that makes `vessel serve` kill itself at a named point (SandboxServiceOptions.TestCrashPoint).</summary>
    public string? ServiceTestCrash { get; init; }

    /// <summary>VESSEL_S3_ENDPOINT: the S3-compatible server of <c>s3://</c> stores (e.g. http://127.0.0.1:9000).</summary>
    public string? S3Endpoint { get; init; }

    /// <summary>VESSEL_S3_ACCESS_KEY and VESSEL_S3_SECRET_KEY: the keys for it.</summary>
    public string? S3AccessKey { get; init; }

    /// <summary>See <see cref="S3AccessKey"/>.</summary>
    public string? S3SecretKey { get; init; }

    /// <summary>VESSEL_S3_REGION: the signing region (default us-east-1).</summary>
    public string? S3Region { get; init; }

    /// <summary>VESSEL_S3_CACHE_MB: the bound of the local chunk cache in MiB (default 8192).</summary>
    public long? S3CacheMiB { get; init; }

    /// <summary>
    /// VESSEL_REMOTE_STORE: a bucket (<c>s3://BUCKET/PREFIX</c>) behind every home's layer store:
    /// builds missing locally are read from it on demand (templates pulled with <c>--lazy</c>).
    /// </summary>
    public string? RemoteStore { get; init; }

    /// <summary>
    /// VESSEL_STATE: where the state lives instead of the home's SQLite file: a PostgreSQL URL
    /// (<c>postgres://USER@HOST:PORT/DB</c>, <c>?host=/socket/dir</c> for a unix socket) or an
    /// Npgsql connection string; what the nodes of a cluster share (docs/cluster.md).
    /// </summary>
    public string? State { get; init; }

    /// <summary>VESSEL_NODE: this daemon's node name in a cluster and in the rows it owns (default: the host name; <c>vessel serve --node</c> overrides it).</summary>
    public string Node { get; init; } = Environment.MachineName;

    /// <summary>VESSEL_CLUSTER_ADDRESS: the IP address other nodes reach this one's silo and API at (default: the --listen address when it names one).</summary>
    public string? ClusterAddress { get; init; }

    /// <summary>VESSEL_SILO_PORT: the Orleans silo-to-silo port of <c>vessel serve --cluster</c> (default 11111).</summary>
    public int SiloPort { get; init; } = 11111;

    /// <summary>VESSEL_GATEWAY_PORT: the Orleans client gateway port (default 30000).</summary>
    public int GatewayPort { get; init; } = 30000;

    /// <summary>
    /// VESSEL_CLUSTER_PROBE_MS: Orleans' probe timeout in milliseconds (default 5000); the other
    /// membership timings scale with it, so a dead node is declared dead after about 3 missed probes
    /// (tests shorten it to find a killed node in seconds).
    /// </summary>
    public int ClusterProbeMilliseconds { get; init; } = 5000;

    /// <summary>True when this process runs as root (decides the default home).</summary>
    public static bool IsRoot => Environment.UserName == "root";

    /// <summary>Reads every VESSEL_* variable of this process once.</summary>
    public static VesselSettings FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable);

    /// <summary>Reads the settings from <paramref name="get"/> (tests pass a dictionary).</summary>
    public static VesselSettings FromEnvironment(Func<string, string?> get)
    {
        string? Read(string name) => get(name) is { Length: > 0 } v ? v : null;
        string home = Read(HomeVariable)
            ?? VesselHome.DefaultRoot(IsRoot, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));
        return new VesselSettings
        {
            Home = new VesselHome(home),
            Accelerator = Read(AcceleratorVariable),
            AgentDirectory = Read("VESSEL_AGENT_DIR"),
            RegistryPassword = get("VESSEL_REGISTRY_PASSWORD"),
            ApiKey = Read("VESSEL_API_KEY"),
            Profile = Read("VESSEL_PROFILE") == "1",
            ContainerdSnapshotView = Read(ContainerdSnapshotViewVariable),
            ContainerdTestHold = Read("VESSEL_CONTAINERD_TEST_HOLD"),
            ShimConfig = Read("VESSEL_SHIM_CONFIG"),
            DefaultOutbound = Read("VESSEL_OUTBOUND"),
            ServiceTestCrash = Read("VESSEL_SERVICE_TEST_CRASH"),
            S3Endpoint = Read("VESSEL_S3_ENDPOINT"),
            S3AccessKey = Read("VESSEL_S3_ACCESS_KEY"),
            S3SecretKey = get("VESSEL_S3_SECRET_KEY"),
            S3Region = Read("VESSEL_S3_REGION"),
            RemoteStore = Read("VESSEL_REMOTE_STORE"),
            State = Read("VESSEL_STATE"),
            Node = Read("VESSEL_NODE") ?? Environment.MachineName,
            ClusterAddress = Read("VESSEL_CLUSTER_ADDRESS"),
            SiloPort = Port(Read("VESSEL_SILO_PORT"), "VESSEL_SILO_PORT") ?? 11111,
            GatewayPort = Port(Read("VESSEL_GATEWAY_PORT"), "VESSEL_GATEWAY_PORT") ?? 30000,
            ClusterProbeMilliseconds = int.TryParse(Read("VESSEL_CLUSTER_PROBE_MS"), out int probe) && probe >= 100 ? probe : 5000,
            S3CacheMiB = long.TryParse(Read("VESSEL_S3_CACHE_MB"), out long mib) && mib > 0 ? mib : null,
        };
    }

    private static int? Port(string? value, string name)
        => value is null ? null
            : int.TryParse(value, out int port) && port is > 0 and < 65536 ? port
            : throw new VesselException(VesselErrorReason.InvalidInput, $"{name}: '{value}' is not a port number (1 to 65535).");

    /// <summary>The location <see cref="State.StateStore.OpenAsync"/> opens for <paramref name="home"/>: <see cref="State"/> when set, else the home's SQLite file.</summary>
    public string StateLocation(VesselHome home) => State ?? home.StateDatabase;

    /// <summary>The options of the bucket store <paramref name="url"/> (<c>s3://BUCKET/PREFIX</c>), its chunks cached in this home.</summary>
    public Blocks.S3StoreOptions S3Store(string url) => S3Store(url, Home);

    /// <summary>The options of the bucket store <paramref name="url"/>, its chunks cached in <paramref name="home"/>.</summary>
    public Blocks.S3StoreOptions S3Store(string url, VesselHome home)
    {
        (string bucket, string prefix) = Blocks.S3StoreOptions.Parse(url);
        if (S3Endpoint is null || S3AccessKey is null || S3SecretKey is null)
        {
            throw new VesselException(VesselErrorReason.InvalidInput,
                $"'{url}' is an object store: set VESSEL_S3_ENDPOINT (e.g. http://127.0.0.1:9000), VESSEL_S3_ACCESS_KEY and VESSEL_S3_SECRET_KEY.");
        }
        if (!Uri.TryCreate(S3Endpoint, UriKind.Absolute, out Uri? endpoint) || endpoint.Scheme is not ("http" or "https"))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"VESSEL_S3_ENDPOINT '{S3Endpoint}' is not an http:// or https:// URL.");
        }
        return new Blocks.S3StoreOptions
        {
            Endpoint = endpoint,
            Bucket = bucket,
            Prefix = prefix,
            AccessKey = S3AccessKey,
            SecretKey = S3SecretKey,
            Region = S3Region ?? "us-east-1",
            CacheDirectory = home.ChunkCache,
            CacheBytes = (S3CacheMiB ?? 8192) << 20,
        };
    }

    /// <summary>
    /// The settings of this process, read once on first use. Library defaults (a kit cache, an
    /// agent directory, the accelerator) come from here when a caller gives none; commands pass
    /// their --home down explicitly.
    /// </summary>
    public static VesselSettings Current => s_current.Value;

    private static readonly Lazy<VesselSettings> s_current = new(FromEnvironment);
}
