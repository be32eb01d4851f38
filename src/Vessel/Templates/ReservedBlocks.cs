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
/// <see cref="HookOptions"/> is the one place that decides, for all three call sites:
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
    public static IReadOnlyList<PreBootHookOption> HookOptions(BuildPhase phase, int reservedMb, bool bootsNewVm = false, bool sourceCached = false)
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
        long bytes = (long)reservedMb << 20;
        return [new PreBootHookOption($"{HookName}: {reservedMb} MiB", (image, ct) => Ext4Tools.SetReservedAsync(image, bytes, ct))];
    }
}
