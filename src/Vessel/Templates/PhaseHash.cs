using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Vessel.Rootfs;

namespace Vessel.Templates;

/// <summary>
/// The versions outside the spec that change what a build produces. They enter the base
/// phase's hash, so a new agent, kernel or provisioning set invalidates every template.
/// </summary>
public sealed record BuildEnvironment
{
    /// <summary>
    /// Used while the guest kit does not report its own versions: the agent protocol version
    /// and "no-kit" for the kernel. When the guest kit lands, its agent build and kernel
    /// release replace these (and so invalidate caches built without it).
    /// </summary>
    public static BuildEnvironment Default { get; } = new()
    {
        AgentVersion = "vessel-agent-protocol/" + Vessel.Agent.Protocol.AgentProtocol.Version.ToString(CultureInfo.InvariantCulture),
        KernelVersion = "no-kit",
    };

    public const int FormatVersion = 1; // the hash scheme itself; bump when its inputs change

    public required string AgentVersion { get; init; }

    public required string KernelVersion { get; init; }

    public int ProvisioningVersion { get; init; } = Provisioning.Version;
}

/// <summary>
/// Phase hashes: SHA-256 over a phase's inputs, chained from the previous phase's hash.
/// Fields are length-prefixed, so no two input lists hash the same way by shifting a
/// separator. base (from an image): the image's content digest (never the tag), the
/// environment versions, the disk size and reserved space; base (from a template): the
/// parent's finalize hash instead of the digest; step: kind, arguments, and for COPY the
/// hash of the copied tree; finalize: cpu, memory, start, ready. The spec's network enters the
/// RUN steps and finalize (what runs commands in the build VM) when it is not the default
/// (outbound on, no rules), so a change of rules rebuilds them and a spec without rules keeps
/// the hashes it had before networks existed.
/// </summary>
public static class PhaseHash
{
    public static string BaseFromImage(string contentDigest, BuildEnvironment env, long? diskSizeBytes, int reservedMb)
        => Hash(null, ["base-image", contentDigest, .. Environment(env), Size(diskSizeBytes), reservedMb.ToString(CultureInfo.InvariantCulture)]);

    public static string BaseFromTemplate(string parentFinalHash, BuildEnvironment env, long diskSizeBytes, int reservedMb)
        => Hash(null, ["base-template", parentFinalHash, .. Environment(env), Size(diskSizeBytes), reservedMb.ToString(CultureInfo.InvariantCulture)]);

    public static string Step(string previous, TemplateStep step, string? copiedFilesHash, Vmm.NetworkConfig? network = null)
        => Hash(previous, ["step", step.Kind.ToString().ToUpperInvariant(), step.Arguments.Count.ToString(CultureInfo.InvariantCulture), .. step.Arguments, copiedFilesHash ?? "-",
            .. step.Kind == StepKind.Run ? Network(network) : []]);

    /// <param name="previous">The last step's hash.</param>
    /// <param name="spec">The template (VM shape, start, ready).</param>
    /// <param name="runner">What finalize's result depends on besides the spec: the step runner's <see cref="IStepRunner.SnapshotIdentity"/> (a snapshot is only valid with the guest kit that took it).</param>
    public static string Finalize(string previous, TemplateSpec spec, string runner = "")
        => Hash(previous, ["finalize", spec.Cpu.ToString(CultureInfo.InvariantCulture), spec.MemoryMb.ToString(CultureInfo.InvariantCulture),
            spec.Start ?? "\0", spec.Ready ?? "\0", runner, .. Network(spec.Network)]);

    /// <summary>No fields for the default network; else the outbound word and the rules, each list sorted (their order does not change what they allow).</summary>
    private static string[] Network(Vmm.NetworkConfig? network)
    {
        if (network is null || (network.Outbound == Vmm.NetworkOutbound.On && network.Allow.Count == 0 && network.Deny.Count == 0))
        {
            return [];
        }
        string[] allow = [.. network.Allow.Select(r => r.ToString()).Order(StringComparer.Ordinal)];
        string[] deny = [.. network.Deny.Select(r => r.ToString()).Order(StringComparer.Ordinal)];
        return ["network", Vmm.NetworkConfig.FormatOutbound(network.Outbound), allow.Length.ToString(CultureInfo.InvariantCulture), .. allow, deny.Length.ToString(CultureInfo.InvariantCulture), .. deny];
    }

    private static string[] Environment(BuildEnvironment env)
        => [BuildEnvironment.FormatVersion.ToString(CultureInfo.InvariantCulture), env.ProvisioningVersion.ToString(CultureInfo.InvariantCulture), env.AgentVersion, env.KernelVersion];

    private static string Size(long? bytes) => bytes?.ToString(CultureInfo.InvariantCulture) ?? "auto";

    private static string Hash(string? previous, string[] fields)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[8];
        foreach (string f in (string[])[previous ?? string.Empty, .. fields])
        {
            byte[] bytes = Encoding.UTF8.GetBytes(f);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(length, bytes.Length);
            h.AppendData(length);
            h.AppendData(bytes);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }
}
