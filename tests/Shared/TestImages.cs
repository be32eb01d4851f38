namespace Vessel.Testing;

/// <summary>
/// Images the tests make themselves from Debian packages, so that a clone needs nothing
/// outside the repository: a busybox-static rootfs (as a plain <c>.tar.gz</c> and as an OCI
/// layout made with umoci, like scripts/demo.sh) and a Debian minbase from debootstrap (a
/// real distribution: glibc, dpkg, apt). Each is built once and cached under
/// <see cref="CacheDirectory"/> in a directory named by a hash of its inputs; a build
/// happens in a temporary directory that is renamed into place, under a file lock, so two
/// test processes that race build it once and never see half an image.
/// </summary>
public static class TestImages
{
    /// <summary>The tools the busybox image needs (requirement "busybox-image").</summary>
    public static readonly string[] BusyboxTools = ["busybox", "umoci", "tar", "gzip"];

    /// <summary>The tools the Debian image needs (requirement "debian-image", which also needs root).</summary>
    public static readonly string[] DebianTools = ["debootstrap", "tar", "gzip", "umount"];

    /// <summary>The content of /etc/vessel-test-release in the busybox image.</summary>
    public const string BusyboxRelease = "busybox-test 1\n";

    /// <summary>The tag of the busybox image in its OCI layout.</summary>
    public const string BusyboxOciTag = "test";

    /// <summary>The Debian suite of the minbase image.</summary>
    public const string DebianSuite = "bookworm";

    private const string BusyboxRecipe = "busybox recipe 1"; // change when the recipe below changes: the cache key includes it
    private const string DebianRecipe = "debian minbase recipe 1";
    private const string FallbackMirror = "http://deb.debian.org/debian";
    private static readonly TimeSpan s_lockWait = TimeSpan.FromMinutes(30); // a Debian build by another test process can take minutes

    private static readonly Lazy<string> s_busybox = new(() => Ensure("busybox", BusyboxKey(), BuildBusyboxAsync));
    private static readonly Lazy<string> s_variant = new(() => Ensure("busybox-variant", Key(BusyboxKey(), VariantMarker), BuildVariantAsync));
    private static readonly Lazy<string> s_debian = new(() => Ensure("debian-" + DebianSuite, DebianKey(), BuildDebianAsync));

    /// <summary>$XDG_CACHE_HOME/vessel/test-images, else ~/.cache/vessel/test-images.</summary>
    public static string CacheDirectory
    {
        get
        {
            string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(cache, "vessel", "test-images");
        }
    }

    /// <summary>The busybox rootfs as a gzip tarball (entries <c>./bin/busybox</c>, ...), like a distribution's minirootfs.</summary>
    public static string BusyboxTarball => Path.Combine(s_busybox.Value, "rootfs.tar.gz");

    /// <summary>
    /// Writes a template spec to <paramref name="path"/>: <paramref name="name"/>, from
    /// <paramref name="from"/> (default: <see cref="BusyboxTarball"/>) on a 128 MiB disk, with
    /// <paramref name="fields"/> (more JSON members: steps, start, ready) added. Returns the path.
    /// </summary>
    public static string WriteTemplateSpec(string path, string name, string fields, string? from = null)
    {
        File.WriteAllText(path, $$"""{ "name": "{{name}}", "from": "{{from ?? "tarball:" + BusyboxTarball}}", "diskSize": "128M", {{fields}} }""");
        return path;
    }

    /// <summary>
    /// A second busybox image (a tarball) that differs from the first by one file,
    /// <see cref="VariantMarkerPath"/>: for tests that need two distinct images (pods).
    /// </summary>
    public static string BusyboxVariantTarball => Path.Combine(s_variant.Value, "rootfs.tar.gz");

    /// <summary>The file only <see cref="BusyboxVariantTarball"/> has, holding <see cref="VariantMarker"/>.</summary>
    public const string VariantMarkerPath = "/etc/vessel-variant";

    public const string VariantMarker = "busybox variant 1\n";

    /// <summary>The same rootfs as an OCI image layout directory (one gzip layer, tag <see cref="BusyboxOciTag"/>).</summary>
    public static string BusyboxOciLayout => Path.Combine(s_busybox.Value, "oci");

    /// <summary>The busybox image as an image source reference: <c>oci:DIR:test</c>.</summary>
    public static string BusyboxOciReference => $"oci:{BusyboxOciLayout}:{BusyboxOciTag}";

    /// <summary>A Debian minbase (debootstrap --variant=minbase) as a gzip tarball.</summary>
    public static string DebianTarball => Path.Combine(s_debian.Value, "rootfs.tar.gz");

    /// <summary>Returns the cached image directory, building it first when no other process has.</summary>
    private static string Ensure(string name, string key, Func<string, Task> build)
    {
        string root = CacheDirectory;
        string final = Path.Combine(root, $"{name}-{key}");
        if (Directory.Exists(final))
        {
            return final;
        }
        Directory.CreateDirectory(root);
        using FileStream held = Lock(Path.Combine(root, $"{name}-{key}.lock"));
        if (Directory.Exists(final))
        {
            return final; // another process built it while we waited
        }
        string temp = Path.Combine(root, $".{name}-{key}.{Guid.NewGuid():N}.partial");
        Directory.CreateDirectory(temp);
        try
        {
            // The build awaits processes; run it off any test synchronization context.
            Task.Run(() => build(temp)).GetAwaiter().GetResult();
            Directory.Move(temp, final);
        }
        catch
        {
            RemoveTree(temp);
            throw;
        }
        return final;
    }

    /// <summary>An exclusive lock held by an open file (.NET takes flock for FileShare.None), polled until it is free.</summary>
    private static FileStream Lock(string path)
    {
        DateTime giveUp = DateTime.UtcNow + s_lockWait;
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < giveUp)
            {
                Thread.Sleep(250);
            }
        }
    }

    private static string BusyboxKey()
    {
        string busybox = ExternalProcess.ResolveTool("busybox");
        string umoci = Run("umoci", ["--version"]);
        return Key(BusyboxRecipe, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(busybox))), umoci);
    }

    private static async Task BuildBusyboxAsync(string dir)
    {
        var ct = CancellationToken.None;
        string layout = Path.Combine(dir, "oci");
        string image = $"{layout}:{BusyboxOciTag}";
        string bundle = Path.Combine(dir, "bundle");
        await ToolAsync("umoci", ["init", "--layout", layout], ct);
        await ToolAsync("umoci", ["new", "--image", image], ct);
        await ToolAsync("umoci", ["unpack", "--rootless", "--image", image, bundle], ct);
        string rootfs = Path.Combine(bundle, "rootfs");
        await WriteBusyboxTreeAsync(rootfs, ct);
        await TarAsync(rootfs, Path.Combine(dir, "rootfs.tar.gz"), ct);
        await ToolAsync("umoci", ["repack", "--image", image, bundle], ct);
        await ToolAsync("umoci", ["config", "--image", image, "--config.cmd", "/bin/sh", "--config.env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "--config.workingdir", "/root"], ct);
        await ToolAsync("umoci", ["gc", "--layout", layout], ct);
        RemoveTree(bundle);
    }

    private static async Task BuildVariantAsync(string dir)
    {
        string rootfs = Path.Combine(dir, "rootfs");
        await WriteBusyboxTreeAsync(rootfs, CancellationToken.None);
        await File.WriteAllTextAsync(rootfs + VariantMarkerPath, VariantMarker, CancellationToken.None);
        await TarAsync(rootfs, Path.Combine(dir, "rootfs.tar.gz"), CancellationToken.None);
        RemoveTree(rootfs);
    }

    /// <summary>busybox-static with every applet linked where <c>busybox --list-full</c> puts it, a passwd with root and nobody, and a release file.</summary>
    private static async Task WriteBusyboxTreeAsync(string root, CancellationToken ct)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("The test images are made on Linux.");
        }
        foreach (string d in new[] { "bin", "sbin", "usr/bin", "usr/sbin", "etc", "home", "proc", "sys", "dev", "run", "var/tmp" })
        {
            Directory.CreateDirectory(Path.Combine(root, d));
        }
        Directory.CreateDirectory(Path.Combine(root, "root"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string tmp = Path.Combine(root, "tmp");
        Directory.CreateDirectory(tmp);
        File.SetUnixFileMode(tmp, (UnixFileMode)0x3FF); // 1777
        string busybox = Path.Combine(root, "bin", "busybox");
        File.Copy(ExternalProcess.ResolveTool("busybox"), busybox);
        File.SetUnixFileMode(busybox, (UnixFileMode)0x1ED);
        foreach (string applet in Run("busybox", ["--list-full"]).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (applet == "bin/busybox")
            {
                continue;
            }
            string link = Path.Combine(root, applet);
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            string up = string.Concat(Enumerable.Repeat("../", applet.Count(c => c == '/')));
            File.CreateSymbolicLink(link, up + "bin/busybox");
        }
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", ct);
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "group"), "root:x:0:\nnobody:x:65534:\n", ct);
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "motd"), "A test image made by Vessel's tests from Debian's busybox-static.\n", ct);
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "issue"), "Vessel test busybox\n", ct);
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "vessel-test-release"), BusyboxRelease, ct);
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "os-release"), "ID=vessel-test\nNAME=\"Vessel test busybox\"\nVERSION_ID=1\n", ct);
    }

    private static string DebianKey()
    {
        string debootstrap = Run("debootstrap", ["--version"]);
        return Key(DebianRecipe, DebianSuite, DebianMirror(), debootstrap);
    }

    private static async Task BuildDebianAsync(string dir)
    {
        var ct = CancellationToken.None;
        string root = Path.Combine(dir, "root");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            await ToolAsync("debootstrap", ["--variant=minbase", DebianSuite, root, DebianMirror()], ct, TimeSpan.FromMinutes(30));
            TimeSpan debootstrap = clock.Elapsed;
            await TarAsync(root, Path.Combine(dir, "rootfs.tar.gz"), ct);
            await File.WriteAllTextAsync(Path.Combine(dir, "build.txt"), string.Create(CultureInfo.InvariantCulture,
                $"debootstrap --variant=minbase {DebianSuite} {DebianMirror()}: {debootstrap.TotalSeconds:F1} s, tarball {(clock.Elapsed - debootstrap).TotalSeconds:F1} s\n"), ct);
        }
        finally
        {
            await UnmountBelowAsync(root);
            RemoveTree(root);
        }
    }

    /// <summary>
    /// The apt mirror this machine uses for Debian (a <c>deb</c> line or a deb822 stanza naming
    /// the suite in /etc/apt/sources.list or sources.list.d), else deb.debian.org.
    /// </summary>
    public static string DebianMirror()
    {
        var files = new List<string> { "/etc/apt/sources.list" };
        if (Directory.Exists("/etc/apt/sources.list.d"))
        {
            files.AddRange(Directory.GetFiles("/etc/apt/sources.list.d").Where(f => f.EndsWith(".list", StringComparison.Ordinal) || f.EndsWith(".sources", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
        }
        foreach (string file in files.Where(File.Exists))
        {
            string? found = file.EndsWith(".sources", StringComparison.Ordinal) ? FromDeb822(File.ReadAllText(file)) : FromOneLine(File.ReadAllLines(file));
            if (found is not null)
            {
                return found;
            }
        }
        return FallbackMirror;
    }

    private static string? FromOneLine(string[] lines)
    {
        foreach (string line in lines)
        {
            string[] words = line.Split(' ', '\t').Where(w => w.Length > 0).ToArray();
            int at = words.Length > 1 && words[1].StartsWith('[') ? Array.FindIndex(words, w => w.EndsWith(']')) + 1 : 1;
            if (words.Length > at + 1 && words[0] == "deb" && words[at + 1] == DebianSuite)
            {
                return words[at];
            }
        }
        return null;
    }

    private static string? FromDeb822(string text)
    {
        foreach (string stanza in text.Replace("\r", string.Empty, StringComparison.Ordinal).Split("\n\n"))
        {
            var fields = stanza.Split('\n')
                .Where(l => l.Contains(':', StringComparison.Ordinal) && !l.StartsWith('#'))
                .Select(l => (Name: l[..l.IndexOf(':', StringComparison.Ordinal)].Trim(), Value: l[(l.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim()))
                .GroupBy(f => f.Name, StringComparer.OrdinalIgnoreCase)
                .ToDictionary(g => g.Key, g => g.First().Value, StringComparer.OrdinalIgnoreCase);
            if (fields.TryGetValue("Types", out string? types) && types.Split(' ').Contains("deb")
                && fields.TryGetValue("Suites", out string? suites) && suites.Split(' ').Contains(DebianSuite)
                && fields.TryGetValue("URIs", out string? uris))
            {
                return uris.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
            }
        }
        return null;
    }

    /// <summary>A reproducible gzip tarball of a tree: sorted names, numeric root ownership kept, no gzip timestamp.</summary>
    private static Task TarAsync(string tree, string output, CancellationToken ct) =>
        ToolAsync("tar", ["--numeric-owner", "--sort=name", "--xattrs", "--use-compress-program=gzip -n", "-cf", output, "-C", tree, "."], ct);

    /// <summary>debootstrap mounts /proc and /sys in its target; a failed run can leave them, and a tree is never deleted through a mount.</summary>
    private static async Task UnmountBelowAsync(string root)
    {
        string prefix = Path.GetFullPath(root) + "/";
        IEnumerable<string> mounts = File.ReadAllLines("/proc/self/mounts")
            .Select(l => l.Split(' ')[1].Replace("\\040", " ", StringComparison.Ordinal))
            .Where(m => m.StartsWith(prefix, StringComparison.Ordinal))
            .OrderByDescending(m => m.Length);
        foreach (string mount in mounts)
        {
            await ToolAsync("umount", [mount], CancellationToken.None);
        }
    }

    private static void RemoveTree(string path)
    {
        if (Directory.Exists(path))
        {
            // --one-file-system: never into a mount that is somehow still there.
            Run("rm", ["-rf", "--one-file-system", path]);
        }
    }

    private static string Key(params string[] inputs) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', inputs))))[..16];

    private static async Task ToolAsync(string tool, IEnumerable<string> args, CancellationToken ct, TimeSpan? timeout = null) =>
        (await ExternalProcess.RunAsync(tool, args, ct, timeout: timeout ?? TimeSpan.FromMinutes(5))).EnsureSuccess();

    private static string Run(string tool, IEnumerable<string> args) =>
        Task.Run(() => ExternalProcess.RunAsync(tool, args, CancellationToken.None, timeout: TimeSpan.FromMinutes(5))).GetAwaiter().GetResult().EnsureSuccess().StandardOutput;
}
