using Vessel.Common;

namespace Vessel.Vmm;

/// <summary>
/// Decides between KVM and TCG. /dev/kvm is not enough: on a PVM host (kvm_pvm loaded, as on
/// this project's machines) stock guest kernels hang under KVM. KVM is picked only when
/// /dev/kvm is there and the loaded KVM module is kvm_intel or kvm_amd. VESSEL_ACCEL=kvm|tcg
/// overrides the probe.
/// </summary>
public static class AccelerationProbe
{
    public static Acceleration Resolve(Acceleration requested, string sysModule = "/sys/module", string devKvm = "/dev/kvm")
    {
        if (requested != Acceleration.Auto)
        {
            return requested;
        }
        string? env = VesselSettings.Current.Accelerator;
        if (!string.IsNullOrEmpty(env))
        {
            return env.ToLowerInvariant() switch
            {
                "kvm" => Acceleration.Kvm,
                "tcg" => Acceleration.Tcg,
                _ => throw new VesselException(VesselErrorReason.InvalidInput, $"{VesselSettings.AcceleratorVariable}='{env}': use kvm or tcg."),
            };
        }
        return Probe(sysModule, devKvm);
    }

    public static Acceleration Probe(string sysModule, string devKvm)
    {
        if (!File.Exists(devKvm) && !Directory.Exists(devKvm) && !Path.Exists(devKvm))
        {
            return Acceleration.Tcg;
        }
        if (Directory.Exists(Path.Combine(sysModule, "kvm_pvm")))
        {
            return Acceleration.Tcg;
        }
        bool hardware = Directory.Exists(Path.Combine(sysModule, "kvm_intel")) || Directory.Exists(Path.Combine(sysModule, "kvm_amd"));
        return hardware ? Acceleration.Kvm : Acceleration.Tcg;
    }
}
