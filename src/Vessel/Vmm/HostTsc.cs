using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Vessel.Interop;

namespace Vessel.Vmm;

/// <summary>
/// The host's TSC frequency. Under TCG the guest's TSC is the host's (QEMU's rdtsc helper reads
/// the host counter), so the guest kernel must be told the host's rate: a wrong one makes the
/// guest clock run fast or slow by the ratio (observed: 2.0 GHz given on a 2.6 GHz host, the
/// guest clock ran 30% fast).
/// </summary>
public static partial class HostTsc
{
    private static readonly Lazy<long?> s_khz = new(Detect);

    /// <summary>The host TSC frequency in kHz, or null when no source gives it.</summary>
    public static long? FrequencyKhz => s_khz.Value;

    private static long? Detect()
    {
        // 1. The kernel's own value, where it exports it (tsc_freq_khz, some kernels).
        if (ReadText("/sys/devices/system/cpu/cpu0/tsc_freq_khz") is { } sys
            && long.TryParse(sys.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long khz) && khz > 0)
        {
            return khz;
        }
        string? cpuinfo = ReadText("/proc/cpuinfo");
        // 2. cpuinfo's "cpu MHz" is the TSC rate when the kernel knew it from CPUID or the hypervisor.
        if (cpuinfo is not null && FromCpuinfo(cpuinfo, requireKnownFrequency: true) is { } known)
        {
            return known;
        }
        // 3. The boot log's calibration (the refined value is better than the early one).
        if (ReadKernelLog() is { } log && FromKernelLog(log) is { } logged)
        {
            return logged;
        }
        // 4. A constant TSC's "cpu MHz" (may be the current core clock on bare metal: last resort).
        return cpuinfo is not null ? FromCpuinfo(cpuinfo, requireKnownFrequency: false) : null;
    }

    /// <summary>"tsc: Refined TSC clocksource calibration: 2596.102 MHz" or "tsc: Detected 2596.142 MHz processor".</summary>
    internal static long? FromKernelLog(string log)
    {
        Match refined = RefinedPattern().Match(log);
        Match m = refined.Success ? refined : DetectedPattern().Match(log);
        return m.Success ? MhzToKhz(m.Groups[1].Value) : null;
    }

    internal static long? FromCpuinfo(string cpuinfo, bool requireKnownFrequency)
    {
        string first = cpuinfo.Split("\n\n", 2)[0];
        string? flags = null;
        string? mhz = null;
        foreach (string line in first.Split('\n'))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                continue;
            }
            string key = line[..colon].Trim();
            if (key == "flags")
            {
                flags = " " + line[(colon + 1)..].Trim() + " ";
            }
            else if (key == "cpu MHz")
            {
                mhz = line[(colon + 1)..].Trim();
            }
        }
        string required = requireKnownFrequency ? " tsc_known_freq " : " constant_tsc ";
        return flags is not null && mhz is not null && flags.Contains(required, StringComparison.Ordinal) ? MhzToKhz(mhz) : null;
    }

    private static long? MhzToKhz(string mhz) =>
        decimal.TryParse(mhz, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value) && value > 0
            ? (long)decimal.Round(value * 1000m)
            : null;

    /// <summary>
    /// The kernel log, as `dmesg` prints it, read with klogctl(2) (no child process, no wait);
    /// null where the kernel refuses (dmesg_restrict without CAP_SYSLOG).
    /// </summary>
    internal static unsafe string? ReadKernelLog()
    {
        int size = LibC.Klogctl(LibC.SyslogActionSizeBuffer, null, 0);
        if (size <= 0)
        {
            return null;
        }
        byte[] buffer = new byte[size];
        fixed (byte* p = buffer)
        {
            int n = LibC.Klogctl(LibC.SyslogActionReadAll, p, size);
            return n > 0 ? Encoding.UTF8.GetString(buffer, 0, n) : null;
        }
    }

    private static string? ReadText(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [GeneratedRegex(@"tsc: Refined TSC clocksource calibration: ([0-9]+\.[0-9]+) MHz")]
    private static partial Regex RefinedPattern();

    [GeneratedRegex(@"tsc: Detected ([0-9]+\.[0-9]+) MHz processor")]
    private static partial Regex DetectedPattern();
}
