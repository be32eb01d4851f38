namespace Vessel.IntegrationTests.Hardening;

/// <summary>
/// The hostile-tar corpus kept as files (tests/corpus/tar, made by tests/corpus/make-corpus.py)
/// through the real CLI, and random byte mutations of a valid tar through the builder (issue 18, item 7).
/// </summary>
public sealed class CorpusTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-corpus-it-");

    public void Dispose() => _dir.Dispose();

    private static string CorpusDirectory => Path.Combine(TestPaths.RepoRoot, "tests", "corpus", "tar");

    public static TheoryData<string> Corpus()
    {
        var data = new TheoryData<string>();
        foreach (string f in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "tests", "corpus", "tar")).Where(f => !f.EndsWith(".expect", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(f));
        }
        return data;
    }

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(Corpus))]
    public async Task Every_corpus_tar_is_refused_with_its_problem_named_and_nothing_written(string name)
    {
        string input = Path.Combine(CorpusDirectory, name);
        string expect = File.ReadAllText(Path.Combine(CorpusDirectory, name.Split(".tar")[0] + ".expect")).Trim();
        string output = _dir.Combine("out.ext4");
        ProcessResult r = await VesselCli.RunAsync(CancellationToken.None, "rootfs", "build", input, "-o", output);
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.StandardError}{r.StandardOutput}");
        Assert.Contains(expect, r.StandardError, StringComparison.Ordinal);
        Assert.StartsWith("vessel: error: ", r.StandardError, StringComparison.Ordinal);
        Assert.Single(r.StandardError.Trim().Split('\n'));
        Assert.True(r.StandardError.Length < 2000, $"{r.StandardError.Length} characters of error");
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir.Path));
    }

    /// <summary>
    /// Seeded mutations (1 to 8 random bytes changed) of a valid tar with files, a directory, a
    /// symlink, a hard link and an xattr: each builds an image e2fsck finds clean, or is refused
    /// with InvalidDataException or VesselException; nothing else is thrown, and nothing but the
    /// output appears in the work directory.
    /// </summary>
    [RequiresFact("e2fsck", Timeout = 600_000)]
    public async Task Random_byte_mutations_of_a_valid_tar_build_clean_or_are_refused()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(9));
        byte[] valid = LayersImageSource.Tar(w =>
        {
            LayersImageSource.Dir(w, "etc");
            LayersImageSource.File(w, "etc/hostname", "mutant\n");
            LayersImageSource.File(w, "etc/motd", new string('m', 3000));
            LayersImageSource.Link(w, System.Formats.Tar.TarEntryType.SymbolicLink, "etc/link", "hostname");
            LayersImageSource.Link(w, System.Formats.Tar.TarEntryType.HardLink, "etc/hard", "etc/hostname");
            var x = new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "bin/x",
                new Dictionary<string, string> { ["SCHILY.xattr.user.k"] = "v" })
            { DataStream = new MemoryStream("x"u8.ToArray()) };
            w.WriteEntry(x);
        });
        var rnd = new Random(18);
        int built = 0, refused = 0;
        for (int i = 0; i < 120; i++)
        {
            byte[] mutant = (byte[])valid.Clone();
            int changes = rnd.Next(1, 9);
            for (int c = 0; c < changes; c++)
            {
                mutant[rnd.Next(mutant.Length)] = (byte)rnd.Next(256);
            }
            using TempDirectory work = TempDirectory.Create("m-", _dir.Path);
            string input = work.Combine("in.tar");
            await File.WriteAllBytesAsync(input, mutant, cts.Token);
            string output = work.Combine("out.ext4");
            try
            {
                await using IImageSource source = await ImageSources.OpenAsync(input, ImageSourceOptions.Default, cts.Token);
                await RootfsBuilder.BuildAsync(source, output, new RootfsBuildOptions { SizeBytes = 64 << 20 }, null, cts.Token);
                ProcessResult fsck = await ExternalProcess.RunAsync("e2fsck", ["-fn", output], cts.Token);
                Assert.True(fsck.ExitCode == 0, $"mutant {i} built an image e2fsck rejects:\n{fsck.StandardOutput}");
                built++;
                Assert.Equal(["in.tar", "out.ext4", "out.ext4.json"], Directory.GetFileSystemEntries(work.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            }
            catch (Exception e) when (e is InvalidDataException or VesselException)
            {
                refused++;
                Assert.Equal(["in.tar"], Directory.GetFileSystemEntries(work.Path).Select(Path.GetFileName));
            }
        }
        Assert.True(built > 0 && refused > 0, $"{built} built, {refused} refused: the mutations should do both");
    }
}
