using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vessel.Common;

namespace Vessel.Guest;

/// <summary>Where the kit builder reads and caches things.</summary>
public sealed record KitOptions
{
    /// <summary>Cache root: downloads/, kernels/, kits/&lt;id&gt;/. Default: the home's kits/ (<see cref="VesselHome.Kits"/>).</summary>
    public string CacheDirectory { get; init; } = DefaultCacheDirectory;

    public KernelPackage Kernel { get; init; } = KernelPackage.Default;

    /// <summary>The published agent (self-contained linux-x64). Default: <see cref="AgentLocator.Find"/>.</summary>
    public string? AgentDirectory { get; init; }

    /// <summary>A static busybox for the initramfs (Debian's busybox-static).</summary>
    public string Busybox { get; init; } = "/bin/busybox";

    public static string DefaultCacheDirectory => VesselSettings.Current.Home.Kits;
}

/// <summary>
/// Builds the guest kit: the pinned Debian kernel (downloaded with apt-get, checked, extracted
/// with dpkg-deb, never installed) and an initramfs written by <see cref="CpioWriter"/> with
/// busybox, the virtio modules and their dependencies, the agent and the glibc pieces it needs.
/// A kit's id is a hash of all its inputs, so a kit is built once and shared (tests, CI) until an
/// input changes.
/// </summary>
public sealed class KitBuilder
{
    // 2: the agent, its runtime and libraries moved from the initramfs to the read-only kit disk.
    private const int FormatVersion = 2;

    /// <summary>The initramfs holds only what reaches the disks (busybox, modules, init): it must stay small.</summary>
    public const long MaxInitramfsBytes = 8L << 20;

    // Files of the published runtime the agent never uses: debugger and tracing support.
    private static readonly HashSet<string> SkippedAgentFiles = new(StringComparer.Ordinal)
    {
        "createdump", "libmscordaccore.so", "libmscordbi.so", "libcoreclrtraceptprovider.so",
    };

    private readonly KitOptions _options;
    private readonly IProgress<string>? _progress;

    public KitBuilder(KitOptions options, IProgress<string>? progress = null)
    {
        _options = options;
        _progress = progress;
    }

    /// <summary>Returns the kit for the current inputs, building it first when it is not in the cache.</summary>
    public async Task<GuestKit> EnsureAsync(CancellationToken cancellationToken)
    {
        string kernelDir = await EnsureKernelAsync(cancellationToken);
        string agentDir = _options.AgentDirectory ?? AgentLocator.Find();
        var agentFiles = Directory.EnumerateFiles(agentDir, "*", SearchOption.AllDirectories)
            .Where(f => !SkippedAgentFiles.Contains(Path.GetFileName(f)) && !f.EndsWith(".pdb", StringComparison.Ordinal) && !f.EndsWith(".dbg", StringComparison.Ordinal))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToList();
        if (!agentFiles.Any(f => Path.GetFileName(f) == "vessel-agent"))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"{agentDir} holds no published vessel-agent: build the CLI (dotnet build), which publishes it, or set VESSEL_AGENT_DIR.");
        }
        IReadOnlyList<string> modules = await ResolveModulesAsync(kernelDir, cancellationToken);
        IReadOnlyList<string> libraries = await ResolveLibrariesAsync(agentFiles, cancellationToken);
        await CheckStaticAsync(_options.Busybox, cancellationToken);
        string init = InitScript.Render(modules);

        // The kit id: every input's bytes, so any change makes a new kit.
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string label, string value) => hash.AppendData(Encoding.UTF8.GetBytes(label + "=" + value + "\n"));
        Add("format", FormatVersion.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Add("kernel", _options.Kernel.Sha256);
        Add("modules", string.Join(',', modules));
        Add("init", init);
        Add("busybox", GuestKit.Sha256File(_options.Busybox));
        using var agentHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (string f in agentFiles)
        {
            agentHash.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(agentDir, f) + "=" + GuestKit.Sha256File(f) + "\n"));
        }
        string agentSha = Convert.ToHexStringLower(agentHash.GetHashAndReset());
        Add("agent", agentSha);
        foreach (string lib in libraries)
        {
            Add("lib:" + lib, GuestKit.Sha256File(lib));
        }
        string id = Convert.ToHexStringLower(hash.GetHashAndReset())[..16];

        string kitDir = Path.Combine(_options.CacheDirectory, "kits", id);
        if (File.Exists(Path.Combine(kitDir, GuestKit.ManifestFile)))
        {
            return GuestKit.Load(kitDir);
        }

        _progress?.Report($"Writing kit {id}: initramfs (busybox, {modules.Count} modules, init), kit disk (agent, {libraries.Count} libraries)");
        // One staging directory per call: builders of the same kit in one process (test fixtures
        // starting together, say) must not write into each other's files; the first move wins.
        string staging = Path.Combine(_options.CacheDirectory, "kits", $".{id}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(staging);
        try
        {
            string vmlinuz = Path.Combine(kernelDir, "boot", "vmlinuz-" + _options.Kernel.Release);
            File.Copy(vmlinuz, Path.Combine(staging, "vmlinuz"));
            string initramfs = Path.Combine(staging, "initramfs.cpio");
            await using (FileStream output = File.Create(initramfs))
            {
                WriteInitramfs(output, kernelDir, modules, libraries, init);
            }
            long initramfsBytes = new FileInfo(initramfs).Length;
            if (initramfsBytes > MaxInitramfsBytes)
            {
                throw new VesselException(VesselErrorReason.InvalidInput, $"The kit's initramfs is {initramfsBytes >> 10} KiB, over the {MaxInitramfsBytes >> 20} MiB a small guest can unpack: something that belongs on the kit disk went into it.");
            }
            KitDisk.Write(Path.Combine(staging, "kit.ext4"), id, KitDiskEntries(agentDir, agentFiles, libraries));
            var manifest = new KitManifest(
                id, "vmlinuz", GuestKit.Sha256File(Path.Combine(staging, "vmlinuz")),
                "initramfs.cpio", GuestKit.Sha256File(initramfs),
                _options.Kernel.Package, _options.Kernel.Version, _options.Kernel.Sha256, modules, agentSha, DateTimeOffset.UtcNow)
            {
                KitDisk = "kit.ext4",
                KitDiskSha256 = GuestKit.Sha256File(Path.Combine(staging, "kit.ext4")),
            };
            await File.WriteAllTextAsync(Path.Combine(staging, GuestKit.ManifestFile), JsonSerializer.Serialize(manifest, KitJsonContext.Default.KitManifest), cancellationToken);
            try
            {
                Directory.Move(staging, kitDir);
            }
            catch (IOException) when (File.Exists(Path.Combine(kitDir, GuestKit.ManifestFile)))
            {
                // Another builder finished the same kit first; theirs is identical.
            }
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }
        _progress?.Report($"Kit {id} ready in {kitDir}");
        return GuestKit.Load(kitDir);
    }

    private void WriteInitramfs(Stream output, string kernelDir, IReadOnlyList<string> modules, IReadOnlyList<string> libraries, string init)
    {
        var cpio = new CpioWriter(output);
        var dirs = new HashSet<string>(StringComparer.Ordinal);
        void EnsureDir(string path)
        {
            string? parent = Path.GetDirectoryName(path.TrimEnd('/'));
            if (!string.IsNullOrEmpty(parent) && parent != "/" && dirs.Add(parent))
            {
                EnsureDir(parent);
                cpio.AddDirectory(parent);
            }
        }
        foreach (string d in new[] { "/dev", "/proc", "/sys", "/tmp", "/mnt", "/mnt/root", "/bin", "/lib/modules", KitDisk.MountPoint })
        {
            EnsureDir(d + "/x");
        }
        // The kernel opens /dev/console for init's stdio before anything mounts devtmpfs.
        cpio.AddCharDevice("/dev/console", 5, 1, 0x180);
        cpio.AddFile("/bin/busybox", File.ReadAllBytes(_options.Busybox), 0x1ED);
        cpio.AddSymlink("/bin/sh", "busybox");
        cpio.AddFile("/init", Encoding.UTF8.GetBytes(init), 0x1ED);
        var moduleFiles = FindModuleFiles(kernelDir);
        foreach (string m in modules)
        {
            cpio.AddFile($"/lib/modules/{m}.ko", File.ReadAllBytes(moduleFiles[m]), 0x1A4);
        }
        // The agent's loader and libraries live on the kit disk at the paths ldd reported: each
        // of their directories is a symlink into the kit disk's mount point.
        foreach (string dir in LibraryDirectories(libraries))
        {
            EnsureDir(dir);
            cpio.AddSymlink(dir, KitDisk.MountPoint + dir);
        }
        cpio.Finish();
    }

    /// <summary>The directories that hold the agent's libraries ("/lib/x86_64-linux-gnu", "/lib64").</summary>
    internal static IReadOnlyList<string> LibraryDirectories(IReadOnlyList<string> libraries) =>
        [.. libraries.Select(l => Path.GetDirectoryName(l)!).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>What goes on the kit disk: the libraries at their host paths, the agent under <see cref="KitDisk.AgentDirectory"/>.</summary>
    private static List<KitDisk.Entry> KitDiskEntries(string agentDir, List<string> agentFiles, IReadOnlyList<string> libraries)
    {
        // ldd reports the path the loader looks up; store the file's bytes there (no symlink chase in the guest).
        var entries = libraries.Select(lib => new KitDisk.Entry(lib, 0x1ED, lib)).ToList();
        foreach (string f in agentFiles)
        {
            string target = KitDisk.AgentDirectory + "/" + Path.GetRelativePath(agentDir, f).Replace('\\', '/');
            bool executable = Path.GetFileName(f) == "vessel-agent" || f.EndsWith(".so", StringComparison.Ordinal);
            entries.Add(new KitDisk.Entry(target, executable ? 0x1ED : 0x1A4, f));
        }
        return entries;
    }

    private async Task<string> EnsureKernelAsync(CancellationToken cancellationToken)
    {
        KernelPackage k = _options.Kernel;
        string kernelDir = Path.Combine(_options.CacheDirectory, "kernels", k.Sha256[..16]);
        if (File.Exists(Path.Combine(kernelDir, ".complete")))
        {
            return kernelDir;
        }
        string downloads = Path.Combine(_options.CacheDirectory, "downloads");
        Directory.CreateDirectory(downloads);
        string deb = Path.Combine(downloads, $"{k.Package}_{k.Version}_amd64.deb");
        if (!File.Exists(deb) || GuestKit.Sha256File(deb) != k.Sha256)
        {
            _progress?.Report($"Downloading {k.Package} {k.Version} with apt-get");
            using TempDirectory temp = TempDirectory.Create(".download-", downloads);
            ProcessResult r = await ExternalProcess.RunAsync("apt-get", ["download", $"{k.Package}={k.Version}"], cancellationToken, workingDirectory: temp.Path, timeout: TimeSpan.FromMinutes(10));
            if (!r.Succeeded)
            {
                throw new VesselException(VesselErrorReason.ToolFailed,
                    $"apt-get download {k.Package}={k.Version} failed: {r.StandardError.Trim()}. Run 'apt-get update'; if the version left the archive, pin a current one in KernelPackage.Default.");
            }
            string fetched = Directory.GetFiles(temp.Path, "*.deb").Single();
            string actual = GuestKit.Sha256File(fetched);
            if (actual != k.Sha256)
            {
                throw new VesselException(VesselErrorReason.Corrupt, $"{Path.GetFileName(fetched)} has sha256 {actual}, but the kit pins {k.Sha256}: refusing to use it.");
            }
            File.Move(fetched, deb, overwrite: true);
        }
        _progress?.Report($"Extracting {Path.GetFileName(deb)}");
        if (Directory.Exists(kernelDir))
        {
            Directory.Delete(kernelDir, recursive: true);
        }
        Directory.CreateDirectory(kernelDir);
        (await ExternalProcess.RunAsync("dpkg-deb", ["-x", deb, kernelDir], cancellationToken, timeout: TimeSpan.FromMinutes(5))).EnsureSuccess();
        if (!File.Exists(Path.Combine(kernelDir, "boot", "vmlinuz-" + k.Release)))
        {
            throw new VesselException(VesselErrorReason.Corrupt, $"{Path.GetFileName(deb)} holds no boot/vmlinuz-{k.Release}.");
        }
        await File.WriteAllTextAsync(Path.Combine(kernelDir, ".complete"), k.Sha256, cancellationToken);
        return kernelDir;
    }

    private Dictionary<string, string> FindModuleFiles(string kernelDir)
    {
        string root = Path.Combine(kernelDir, "lib", "modules", _options.Kernel.Release);
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string f in Directory.EnumerateFiles(root, "*.ko", SearchOption.AllDirectories))
        {
            map.TryAdd(Path.GetFileNameWithoutExtension(f).Replace('-', '_'), f);
        }
        return map;
    }

    /// <summary>The guest modules with their dependencies (modinfo -F depends), each after what it needs.</summary>
    private async Task<IReadOnlyList<string>> ResolveModulesAsync(string kernelDir, CancellationToken cancellationToken)
    {
        Dictionary<string, string> files = FindModuleFiles(kernelDir);
        var order = new List<string>();
        var visiting = new HashSet<string>(StringComparer.Ordinal);
        async Task VisitAsync(string name)
        {
            if (order.Contains(name))
            {
                return;
            }
            if (!visiting.Add(name))
            {
                throw new InvalidDataException($"kernel module dependency cycle at {name}");
            }
            if (!files.TryGetValue(name, out string? path))
            {
                throw new VesselException(VesselErrorReason.NotFound, $"Kernel {_options.Kernel.Release} has no module {name} (it may be built in; the kit expects it as a module).");
            }
            ProcessResult r = (await ExternalProcess.RunAsync("modinfo", ["-F", "depends", path], cancellationToken)).EnsureSuccess();
            foreach (string dep in r.StandardOutput.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                await VisitAsync(dep.Replace('-', '_'));
            }
            visiting.Remove(name);
            order.Add(name);
        }
        foreach (string m in KernelPackage.GuestModules)
        {
            await VisitAsync(m);
        }
        return order;
    }

    /// <summary>The shared libraries the agent's executable and native libraries load (ldd), outside the agent directory.</summary>
    private static async Task<IReadOnlyList<string>> ResolveLibrariesAsync(List<string> agentFiles, CancellationToken cancellationToken)
    {
        var libs = new SortedSet<string>(StringComparer.Ordinal);
        var names = agentFiles.Select(Path.GetFileName).ToHashSet(StringComparer.Ordinal);
        foreach (string f in agentFiles.Where(f => f.EndsWith(".so", StringComparison.Ordinal) || Path.GetFileName(f) == "vessel-agent"))
        {
            ProcessResult r = await ExternalProcess.RunAsync("ldd", [f], cancellationToken);
            foreach (string line in r.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                // "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
                string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (line.Contains("not found", StringComparison.Ordinal))
                {
                    if (names.Contains(parts[0]))
                    {
                        continue; // one of the agent's own libraries, found beside it at run time
                    }
                    throw new VesselException(VesselErrorReason.NotFound, $"{Path.GetFileName(f)} needs {parts[0]}, which this host lacks.");
                }
                string? path = parts.Length >= 3 && parts[1] == "=>" ? parts[2] : parts[0].StartsWith('/') ? parts[0] : null;
                if (path is not null && path.StartsWith('/') && !names.Contains(Path.GetFileName(path)))
                {
                    libs.Add(path);
                }
            }
        }
        return [.. libs];
    }

    private static async Task CheckStaticAsync(string busybox, CancellationToken cancellationToken)
    {
        if (!File.Exists(busybox))
        {
            throw new VesselException(VesselErrorReason.ToolMissing, $"{busybox} is missing: install busybox-static (scripts/setup.sh).");
        }
        ProcessResult r = await ExternalProcess.RunAsync("ldd", [busybox], cancellationToken);
        if (r.Succeeded && r.StandardOutput.Contains("=>", StringComparison.Ordinal))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{busybox} is dynamically linked; the initramfs needs a static one (install busybox-static).");
        }
    }
}

/// <summary>Finds the published agent: $VESSEL_AGENT_DIR (<see cref="VesselSettings.AgentDirectory"/>), or agent/ beside the running assemblies.</summary>
public static class AgentLocator
{
    public static string Find()
    {
        string dir = VesselSettings.Current.AgentDirectory ?? Path.Combine(AppContext.BaseDirectory, "agent");
        if (!File.Exists(Path.Combine(dir, "vessel-agent")))
        {
            throw new VesselException(VesselErrorReason.NotFound, $"No published guest agent in {dir}: build the CLI (dotnet build publishes the agent beside it) or set VESSEL_AGENT_DIR.");
        }
        return dir;
    }
}
