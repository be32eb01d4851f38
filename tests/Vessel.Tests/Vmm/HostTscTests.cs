namespace Vessel.Tests.Vmm;

public sealed class HostTscTests
{
    [Fact]
    public void The_refined_calibration_wins_over_the_early_detection_in_the_kernel_log()
    {
        const string Log = "[    0.000000] tsc: Detected 2596.142 MHz processor\n[    1.234567] tsc: Refined TSC clocksource calibration: 2596.101 MHz\n";
        Assert.Equal(2_596_101, HostTsc.FromKernelLog(Log));
        Assert.Equal(2_096_006, HostTsc.FromKernelLog("[    0.000258] tsc: Detected 2096.006 MHz processor\n"));
        Assert.Null(HostTsc.FromKernelLog("[    0.0] clocksource: jiffies\n"));
    }

    [Fact]
    public void Cpuinfo_gives_the_tsc_rate_only_when_its_flags_vouch_for_it()
    {
        const string Known = "processor\t: 0\ncpu MHz\t\t: 2096.006\nflags\t\t: fpu tsc constant_tsc nonstop_tsc tsc_known_freq\n\nprocessor\t: 1\ncpu MHz\t\t: 1.000\n";
        const string Constant = "processor\t: 0\ncpu MHz\t\t: 3400.000\nflags\t\t: fpu tsc constant_tsc\n";
        Assert.Equal(2_096_006, HostTsc.FromCpuinfo(Known, requireKnownFrequency: true));
        Assert.Null(HostTsc.FromCpuinfo(Constant, requireKnownFrequency: true));
        Assert.Equal(3_400_000, HostTsc.FromCpuinfo(Constant, requireKnownFrequency: false));
        Assert.Null(HostTsc.FromCpuinfo("processor\t: 0\ncpu MHz\t\t: 3400.000\nflags\t\t: fpu tsc\n", requireKnownFrequency: false));
    }

    [Fact]
    public async Task The_kernel_log_read_with_klogctl_agrees_with_dmesg()
    {
        ProcessResult dmesg = await ExternalProcess.RunAsync("dmesg", [], CancellationToken.None);
        string? log = HostTsc.ReadKernelLog();
        if (!dmesg.Succeeded)
        {
            Assert.Null(log); // dmesg_restrict without CAP_SYSLOG refuses both
            return;
        }
        Assert.NotNull(log);
        Assert.Equal(HostTsc.FromKernelLog(dmesg.StandardOutput), HostTsc.FromKernelLog(log));
    }
}
