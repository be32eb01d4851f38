namespace Vessel.Tests.Vmm;

public sealed class QemuDriverTests
{
    private static VmConfig Config(string? memoryFile = null) => new()
    {
        KernelPath = "/k/vmlinuz",
        InitramfsPath = "/k/initramfs.cpio",
        KernelParameters = ["vessel.token=abc"],
        Disks = [DiskConfig.File("/s/root,fs.ext4"), DiskConfig.Nbd("/s/nbd.sock", "rootfs", readOnly: true) with { Serial = "vessel-kit" }],
        TscKhz = 2_596_142,
        ControlSocketPath = "/s/ctl.sock",
        ApiSocketPath = "/s/qmp.sock",
        ConsoleLogPath = "/s/console.log",
        MemoryBackendFile = memoryFile,
    };

    [Fact]
    public void Arguments_describe_a_microvm_with_disks_control_port_console_and_qmp()
    {
        string line = string.Join(' ', QemuDriver.BuildArguments(Config(), Acceleration.Tcg));
        Assert.Contains("-M microvm -accel tcg -cpu max", line, StringComparison.Ordinal);
        Assert.Contains("file=/s/root,,fs.ext4,format=raw", line, StringComparison.Ordinal); // commas doubled
        Assert.Contains("driver=nbd,server.type=unix,server.path=/s/nbd.sock,export=rootfs", line, StringComparison.Ordinal);
        Assert.Contains("readonly=on -device virtio-blk-device,drive=d1,serial=vessel-kit", line, StringComparison.Ordinal);
        Assert.Contains("virtserialport,chardev=ctl,name=vessel.ctl", line, StringComparison.Ordinal);
        Assert.Contains("-qmp unix:/s/qmp.sock,server=on,wait=off", line, StringComparison.Ordinal);
        Assert.Contains("vessel.token=abc", line, StringComparison.Ordinal);
        Assert.Contains("tsc_early_khz=2596142 tsc=reliable", line, StringComparison.Ordinal);
        Assert.DoesNotContain("memory-backend", line, StringComparison.Ordinal);
    }

    [Fact]
    public void A_virtio_fs_device_gets_shared_memfd_ram_modern_transports_and_a_vhost_user_socket()
    {
        string line = string.Join(' ', QemuDriver.BuildArguments(Config() with { VirtioFs = new VirtioFsConfig("/s/fs,1.sock", "vessel-lowers") }, Acceleration.Tcg));
        Assert.Contains("-object memory-backend-memfd,id=mem0,size=256M,share=on -M microvm,memory-backend=mem0", line, StringComparison.Ordinal);
        Assert.Contains("-global virtio-mmio.force-legacy=false", line, StringComparison.Ordinal);
        Assert.Contains("-chardev socket,id=fs0,path=/s/fs,,1.sock -device vhost-user-fs-device,chardev=fs0,tag=vessel-lowers", line, StringComparison.Ordinal);
        Assert.DoesNotContain("force-legacy", string.Join(' ', QemuDriver.BuildArguments(Config(), Acceleration.Tcg)), StringComparison.Ordinal);
    }

    [Fact]
    public void Without_a_known_tsc_frequency_the_guest_calibrates_its_own()
    {
        string line = string.Join(' ', QemuDriver.BuildArguments(Config() with { TscKhz = null }, Acceleration.Tcg));
        Assert.DoesNotContain("tsc_early_khz", line, StringComparison.Ordinal);
        Assert.Contains("tsc=reliable no_timer_check", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Memory_backend_file_is_shared_guest_ram()
    {
        string line = string.Join(' ', QemuDriver.BuildArguments(Config("/s/mem"), Acceleration.Kvm));
        Assert.Contains("memory-backend-file,id=mem0,size=256M,mem-path=/s/mem,share=on", line, StringComparison.Ordinal);
        Assert.Contains("-M microvm,memory-backend=mem0 -accel kvm -cpu host", line, StringComparison.Ordinal);
        Assert.DoesNotContain("tsc_early_khz", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Probe_picks_tcg_on_pvm_and_without_kvm_and_kvm_only_with_hardware_modules()
    {
        using TempDirectory dir = TempDirectory.Create("vessel-probe-");
        string modules = dir.Combine("module");
        string dev = dir.Combine("kvm");
        Directory.CreateDirectory(modules);
        Assert.Equal(Acceleration.Tcg, AccelerationProbe.Probe(modules, dev));
        File.WriteAllText(dev, string.Empty);
        Directory.CreateDirectory(Path.Combine(modules, "kvm"));
        Directory.CreateDirectory(Path.Combine(modules, "kvm_pvm"));
        Assert.Equal(Acceleration.Tcg, AccelerationProbe.Probe(modules, dev));
        Directory.Delete(Path.Combine(modules, "kvm_pvm"));
        Directory.CreateDirectory(Path.Combine(modules, "kvm_intel"));
        Assert.Equal(Acceleration.Kvm, AccelerationProbe.Probe(modules, dev));
        Assert.Equal(Acceleration.Tcg, AccelerationProbe.Resolve(Acceleration.Tcg, modules, dev));
    }
}
