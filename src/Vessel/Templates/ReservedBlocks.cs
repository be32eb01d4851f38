using Vessel.Common;
using Vessel.Ext4;

namespace Vessel.Templates;

/// <summary>The phases of a template build.</summary>
public enum BuildPhase
{
    Base,
    Step,
    Finalize,
}

/// <summary>
/// Reserved blocks, set with the host's <c>tune2fs -r</c> through a pre-boot hook, never
/// inside the guest (seed 000: a guest without e2fsprogs, or with an old one, cannot do it).
/// <see cref="Hook"/> is the one rule for the amount (round up to whole blocks, skip when
/// unchanged, refuse over half: <see cref="Ext4Tools.SetReservedAsync"/>), on both paths:
/// <c>sandbox run --reserved</c> and template builds. <see cref="Hooks"/> is the one place that
/// decides when a template build sets them, for all three call sites:
/// <list type="bullet">
/// <item>base: always (it writes the layer every later phase starts from; 0 MiB resets a parent's value);</item>
/// <item>step: only in the step that boots a new VM, that is the first uncached one;</item>
/// <item>finalize: only when its source layer was cached, since otherwise a step of this build already set them.</item>
/// </list>
/// Steps and finalize add nothing when no space is reserved.
/// </summary>
public static class ReservedBlocks
{
    public const string HookName = "reserved blocks (host tune2fs -r)";

    /// <param name="phase">The call site.</param>
    /// <param name="reservedMb">The template's reserved space.</param>
    /// <param name="bootsNewVm">Step: this step starts a new build VM (it is the first uncached step of a run).</param>
    /// <param name="sourceCached">Finalize: the layer it starts from came from the cache (no step ran in this build).</param>
    public static IReadOnlyList<PreBootHook> Hooks(BuildPhase phase, int reservedMb, bool bootsNewVm = false, bool sourceCached = false)
    {
        bool wanted = phase switch
        {
            BuildPhase.Base => true,
            BuildPhase.Step => bootsNewVm && reservedMb > 0,
            BuildPhase.Finalize => sourceCached && reservedMb > 0,
            _ => throw new ArgumentOutOfRangeException(nameof(phase)),
        };
        if (!wanted)
        {
            return [];
        }
        return [Hook((long)reservedMb << 20)];
    }

    /// <summary>
    /// Sets the ext4 reserved blocks to <paramref name="bytes"/> with the host's <c>tune2fs -r</c>,
    /// so the guest image needs no e2fsprogs of its own and never runs an old one against newer features.
    /// </summary>
    public static PreBootHook Hook(long bytes)
    {
        if (bytes < 0)
        {
            throw new VesselException(VesselErrorReason.InvalidInput, "Reserved space cannot be negative.");
        }
        return new PreBootHook($"{HookName}: {ByteSize.Format(bytes)}", (context, ct) => Ext4Tools.SetReservedAsync(context.RootfsPath, bytes, ct));
    }
}
