using System.Formats.Tar;
using Xunit.Abstractions;

namespace Vessel.IntegrationTests.Rootfs;

/// <summary>
/// Hostile and broken inputs: each build must fail with a non-zero exit and a message that
/// names the problem, leave no output file (nor OUT.json, nor anything else) in the output
/// directory, and write nothing anywhere else: a canary directory next to it stays empty, a
/// file outside stays unchanged, and the input directory keeps exactly its files.
/// </summary>
public sealed class RootfsHostileInputTests
{
    private const string Secret = "outside the root\n";
    private readonly ITestOutputHelper _output;

    public RootfsHostileInputTests(ITestOutputHelper output)
    {
        _output = output;
    }

    public static TheoryData<string> Cases => new()
    {
        "dotdot-entry",
        "absolute-entry",
        "entry-under-symlink-to-outside",
        "hardlink-to-missing-target",
        "hardlink-escaping-the-root",
        "truncated-gzip",
        "corrupt-gzip",
        "layer-digest-mismatch",
        "index-for-another-architecture",
        "manifest-for-another-architecture",
        "entry-claiming-1-EiB",
        "entry-claiming-1-EiB-in-gzip-layer",
        "size-option-absurd",
        "size-smaller-than-content",
        "name-component-over-255-bytes",
    };

    [RequiresTheory("e2fsck", Timeout = 60_000)]
    [MemberData(nameof(Cases))]
    public async Task Hostile_input_fails_cleanly_without_writing_outside(string name)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        using TempDirectory root = TempDirectory.Create("vessel-hostile-");
        string input = root.Combine("input");
        string output = root.Combine("out");
        string canary = root.Combine("canary");
        string outside = root.Combine("outside-file");
        Directory.CreateDirectory(input);
        Directory.CreateDirectory(output);
        Directory.CreateDirectory(canary);
        File.WriteAllText(outside, Secret);
        (string source, string[] extra, string[] mentions) = Prepare(name, input, canary);
        string[] inputFiles = ListFiles(input);
        string image = Path.Combine(output, "rootfs.ext4");

        ProcessResult result = await RootfsBuild.RunAsync(deadline.Token, [source, "-o", image, .. extra]);
        _output.WriteLine($"exit {result.ExitCode}: {result.StandardError.Trim()}");

        Assert.True(result.ExitCode != 0, $"the build of a {name} input succeeded:\n{result.StandardOutput}\n{result.StandardError}");
        Assert.True(
            mentions.Any(m => result.StandardError.Contains(m, StringComparison.OrdinalIgnoreCase)),
            $"stderr does not name the problem (expected one of: {string.Join(" | ", mentions)}):\n{result.StandardError}");
        Assert.Empty(ListFiles(output));
        Assert.Empty(ListFiles(canary));
        Assert.Equal(Secret, File.ReadAllText(outside));
        Assert.Equal(inputFiles, ListFiles(input));
        Assert.Equal<string>(["canary", "input", "out", "outside-file"], Directory.EnumerateFileSystemEntries(root.Path).Select(p => Path.GetFileName(p)).Order(StringComparer.Ordinal).ToArray());
    }

    /// <summary>The same kinds of input, untampered, build: the failures above are the hostility's doing.</summary>
    [RequiresTheory("e2fsck", Timeout = 60_000)]
    [InlineData("plain-tar")]
    [InlineData("gzip-tar")]
    [InlineData("oci-layout-direct")]
    [InlineData("oci-layout-via-index")]
    public async Task Untampered_control_inputs_build(string kind)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        using TempDirectory root = TempDirectory.Create("vessel-control-");
        byte[] tar = HostileInputs.TarWithRandomFile("data/random", 256 << 10);
        string source = kind switch
        {
            "plain-tar" => Write(root.Combine("control.tar"), tar),
            "gzip-tar" => Write(root.Combine("control.tar.gz"), LayersImageSource.Gzip(tar)),
            "oci-layout-direct" => Layout(root.Combine("layout"), tar, gzip: true, "amd64", viaIndex: false),
            "oci-layout-via-index" => Layout(root.Combine("layout"), tar, gzip: false, "amd64", viaIndex: true),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        string image = root.Combine("control.ext4");

        await RootfsBuild.BuildAsync(source, image, deadline.Token);

        await RootfsChecker.AssertFsckCleanAsync(image, deadline.Token);
        RootfsChecker.AssertMetadata(image);
    }

    private static (string Source, string[] Extra, string[] Mentions) Prepare(string name, string input, string canary)
    {
        string tarPath = Path.Combine(input, "hostile.tar");
        switch (name)
        {
            case "dotdot-entry":
                Write(tarPath, HostileInputs.Tar((TarEntryType.Directory, "ok/", null), (TarEntryType.RegularFile, "../canary/evil", "evil")));
                return (tarPath, [], ["canary/evil"]);
            case "absolute-entry":
                Write(tarPath, HostileInputs.Tar((TarEntryType.RegularFile, canary + "/evil", "evil")));
                return (tarPath, [], ["canary/evil"]);
            case "entry-under-symlink-to-outside":
                Write(tarPath, HostileInputs.Tar(
                    (TarEntryType.SymbolicLink, "escape-link", canary),
                    (TarEntryType.RegularFile, "escape-link/evil", "evil")));
                return (tarPath, [], ["escape-link"]);
            case "hardlink-to-missing-target":
                Write(tarPath, HostileInputs.Tar((TarEntryType.HardLink, "dangling-hardlink", "no-such-target")));
                return (tarPath, [], ["no-such-target", "dangling-hardlink"]);
            case "hardlink-escaping-the-root":
                Write(tarPath, HostileInputs.Tar(
                    (TarEntryType.RegularFile, "inside", "inside"),
                    (TarEntryType.HardLink, "stolen", "../outside-file")));
                return (tarPath, [], ["outside-file", "stolen"]);
            case "truncated-gzip":
                {
                    byte[] gz = LayersImageSource.Gzip(HostileInputs.TarWithRandomFile("data/random", 512 << 10));
                    string path = Write(Path.Combine(input, "truncated.tar.gz"), gz.AsSpan(0, gz.Length / 2).ToArray());
                    return (path, [], ["gzip", "compress", "truncat", "unexpected end", "end of"]);
                }
            case "corrupt-gzip":
                {
                    byte[] gz = LayersImageSource.Gzip(HostileInputs.TarWithRandomFile("data/random", 512 << 10));
                    gz.AsSpan(gz.Length / 2, 64).Fill(0xFF);
                    string path = Write(Path.Combine(input, "corrupt.tar.gz"), gz);
                    return (path, [], ["gzip", "compress", "corrupt", "crc", "checksum", "deflate", "invalid"]);
                }
            case "layer-digest-mismatch":
                {
                    string layout = Path.Combine(input, "layout");
                    byte[] tar = HostileInputs.TarWithRandomFile("data/random", 64 << 10);
                    string blob = HostileInputs.WriteOciLayout(layout, tar, gzip: false, "amd64", viaIndex: false);
                    HostileInputs.FlipByte(blob, 4096); // inside the file's content: still a valid tar
                    return ($"{layout}:{HostileInputs.Tag}", [], ["digest", HostileInputs.Digest(tar)[7..19]]);
                }
            case "index-for-another-architecture":
                return (Layout(Path.Combine(input, "layout"), HostileInputs.TarWithRandomFile("data/x", 1024), gzip: true, "arm64", viaIndex: true), [],
                    ["arm64", "amd64", "architecture", "platform"]);
            case "manifest-for-another-architecture":
                return (Layout(Path.Combine(input, "layout"), HostileInputs.TarWithRandomFile("data/x", 1024), gzip: true, "arm64", viaIndex: false), [],
                    ["arm64", "amd64", "architecture", "platform"]);
            case "entry-claiming-1-EiB":
                Write(tarPath, HostileInputs.TarClaimingSize("huge-file", 1L << 60));
                return (tarPath, [], ["huge-file", "size"]);
            case "entry-claiming-1-EiB-in-gzip-layer":
                {
                    // Through the streaming layer reader rather than the archive sniffer.
                    string path = Write(Path.Combine(input, "huge.tar.gz"), LayersImageSource.Gzip(HostileInputs.TarClaimingSize("huge-file", 1L << 60)));
                    return (path, [], ["huge-file", "size"]);
                }
            case "size-option-absurd":
                Write(tarPath, HostileInputs.TarWithRandomFile("data/random", 1024));
                return (tarPath, ["--size", "64T"], ["size"]);
            case "size-smaller-than-content":
                Write(tarPath, HostileInputs.TarWithRandomFile("data/random", 8 << 20));
                return (tarPath, ["--size", "4M"], ["size", "space", "fit", "small", "full"]);
            case "name-component-over-255-bytes":
                Write(tarPath, HostileInputs.Tar((TarEntryType.RegularFile, "dir/" + new string('x', 256), "x")));
                return (tarPath, [], [new string('x', 40), "255", "too long"]);
            default:
                throw new ArgumentOutOfRangeException(nameof(name));
        }
    }

    private static string Layout(string layout, byte[] tar, bool gzip, string architecture, bool viaIndex)
    {
        HostileInputs.WriteOciLayout(layout, tar, gzip, architecture, viaIndex);
        return $"{layout}:{HostileInputs.Tag}";
    }

    private static string Write(string path, byte[] data)
    {
        File.WriteAllBytes(path, data);
        return path;
    }

    private static string[] ListFiles(string directory)
        => Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(directory, p))
            .Order(StringComparer.Ordinal)
            .ToArray();
}
