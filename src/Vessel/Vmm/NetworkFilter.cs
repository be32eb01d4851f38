using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Vessel.Common;

namespace Vessel.Vmm;

/// <summary>
/// The connect filter that enforces a sandbox's network rules outside the guest: a small shared
/// library (NetworkFilter.c, compiled once per source hash with the clang that scripts/setup.sh
/// installs) that QEMU loads with <c>LD_PRELOAD</c>. It wraps libc's <c>connect</c>,
/// <c>sendto</c> and <c>sendmsg</c>, which libslirp calls for every destination a guest reaches,
/// and refuses denied destinations and the host itself (loopback and its own addresses) unless
/// an allow rule names it. See docs/ARCHITECTURE.md, Network, for why this and not a network namespace.
/// </summary>
public sealed record NetworkFilter(string LibraryPath, string Rules)
{
    /// <summary>The variable the library reads its rules from (set only in QEMU's environment).</summary>
    public const string RulesVariable = "VNF_RULES";

    private const string SourceResource = "Vessel.Vmm.NetworkFilter.c";
    private const int DnsPort = 53;

    /// <summary>QEMU's environment additions.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["LD_PRELOAD"] = LibraryPath,
        [RulesVariable] = Rules,
    };

    /// <summary>
    /// The filter for <paramref name="config"/>: the library (built into <paramref name="libraryDirectory"/>
    /// when missing) and its rules, host names resolved now, and the host's resolvers (slirp's
    /// DNS proxy 10.0.2.3 forwards to them) allowed on port 53 unless outbound is off.
    /// </summary>
    public static async Task<NetworkFilter> CreateAsync(NetworkConfig config, string libraryDirectory, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        string rules = await RulesAsync(config, ReadNameservers("/etc/resolv.conf"), cancellationToken);
        string library = await EnsureLibraryAsync(libraryDirectory, cancellationToken);
        return new NetworkFilter(library, rules);
    }

    /// <summary>The rule text (NetworkFilter.c's format): the policy, then +allow and -deny entries.</summary>
    public static async Task<string> RulesAsync(NetworkConfig config, IReadOnlyList<IPAddress> nameservers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(nameservers);
        var text = new StringBuilder(config.Outbound == NetworkOutbound.On ? "on" : "restrict");
        if (config.Outbound != NetworkOutbound.Off)
        {
            foreach (IPAddress server in nameservers)
            {
                text.Append(Entry('+', server, server.AddressFamily == AddressFamily.InterNetwork ? 32 : 128, DnsPort));
            }
        }
        foreach ((char sign, IReadOnlyList<NetworkRule> list) in new[] { ('+', config.Allow), ('-', config.Deny) })
        {
            foreach (NetworkRule rule in list)
            {
                foreach ((IPAddress address, int prefix) in await ResolveAsync(rule, cancellationToken))
                {
                    text.Append(Entry(sign, address, prefix, rule.Port ?? 0));
                }
            }
        }
        return text.ToString();
    }

    /// <summary>The nameserver lines of a resolv.conf (none when it is missing).</summary>
    public static IReadOnlyList<IPAddress> ReadNameservers(string path)
    {
        if (!File.Exists(path))
        {
            return [];
        }
        var servers = new List<IPAddress>();
        foreach (string line in File.ReadLines(path))
        {
            string[] words = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (words.Length >= 2 && words[0] == "nameserver" && IPAddress.TryParse(words[1], out IPAddress? address))
            {
                servers.Add(address);
            }
        }
        return servers;
    }

    private static string Entry(char sign, IPAddress address, int prefix, int port) =>
        string.Create(CultureInfo.InvariantCulture, $" {sign}{address}/{prefix}:{port}");

    private static async Task<IReadOnlyList<(IPAddress Address, int Prefix)>> ResolveAsync(NetworkRule rule, CancellationToken cancellationToken)
    {
        if (rule.PrefixLength is { } prefix)
        {
            return [(IPAddress.Parse(rule.Host), prefix)];
        }
        if (rule.IsHostLoopback)
        {
            // localhost and host.vessel.internal mean the host's 127.0.0.1.
            return [(IPAddress.TryParse(rule.Host, out IPAddress? ip) ? ip : IPAddress.Loopback, 32)];
        }
        if (IPAddress.TryParse(rule.Host, out IPAddress? literal))
        {
            return [(literal, literal.AddressFamily == AddressFamily.InterNetwork ? 32 : 128)];
        }
        IPAddress[] addresses;
        try
        {
            addresses = await Dns.GetHostAddressesAsync(rule.Host, cancellationToken);
        }
        catch (SocketException e)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"network rule '{rule}': cannot resolve '{rule.Host}' on the host ({e.Message})", e);
        }
        if (addresses.Length == 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"network rule '{rule}': '{rule.Host}' has no address on the host");
        }
        return [.. addresses.Select(a => (a, a.AddressFamily == AddressFamily.InterNetwork ? 32 : 128))];
    }

    /// <summary>The compiled library in <paramref name="directory"/>, named by its source's hash; built when missing.</summary>
    public static async Task<string> EnsureLibraryAsync(string directory, CancellationToken cancellationToken)
    {
        byte[] source = ReadSource();
        string path = Path.Combine(directory, $"netfilter-{Convert.ToHexStringLower(SHA256.HashData(source))[..16]}.so");
        if (File.Exists(path))
        {
            return path;
        }
        Directory.CreateDirectory(directory);
        string compiler = ExternalProcess.IsAvailable("clang") ? "clang" : ExternalProcess.IsAvailable("cc") ? "cc"
            : throw new VesselException(VesselErrorReason.ToolMissing, "Building the network filter needs a C compiler (clang): install clang (scripts/setup.sh).");
        using var output = OutputFile.Begin(path, "network filter");
        string sourcePath = output.PartialPath + ".c";
        try
        {
            await File.WriteAllBytesAsync(sourcePath, source, cancellationToken);
            (await ExternalProcess.RunAsync(compiler, ["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", output.PartialPath, sourcePath], cancellationToken, timeout: TimeSpan.FromMinutes(2))).EnsureSuccess();
            output.Commit();
        }
        finally
        {
            File.Delete(sourcePath);
        }
        return path;
    }

    private static byte[] ReadSource()
    {
        using Stream stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(SourceResource)
            ?? throw new InvalidOperationException($"{SourceResource} is not embedded in {Assembly.GetExecutingAssembly().GetName().Name}.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
