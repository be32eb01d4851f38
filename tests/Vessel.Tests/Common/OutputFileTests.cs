namespace Vessel.Tests.Common;

public sealed class OutputFileTests : IDisposable
{
    private readonly TempDirectory _dir = TempDirectory.Create("vessel-output-test-");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_partial_name_carries_this_process_as_its_owner()
    {
        using OutputFile output = OutputFile.Begin(_dir.Combine("out.ext4"));
        string name = Path.GetFileName(output.PartialPath);
        Assert.StartsWith(".out.ext4.", name, StringComparison.Ordinal);
        Assert.Equal(ProcessOwner.Current, OutputFile.OwnerOf(name));
        Assert.True(ProcessOwner.IsAlive(ProcessOwner.Current));
    }

    [Fact]
    public void Leftovers_of_dead_owners_are_reclaimed_and_live_ones_and_other_files_kept()
    {
        string nonce = Guid.NewGuid().ToString("N");
        string dead = $"{Environment.ProcessId}-1"; // this pid with another start time: a recycled pid, so dead
        string deadFile = _dir.Combine($".a.ext4.{dead}.{nonce}.partial");
        string liveFile = _dir.Combine($".b.ext4.{ProcessOwner.Current}.{nonce}.partial");
        string oldFormat = _dir.Combine($".c.ext4.{nonce}.partial");
        string userFile = _dir.Combine(".notes.partial");
        foreach (string f in new[] { deadFile, liveFile, oldFormat, userFile })
        {
            File.WriteAllText(f, "x");
        }
        Assert.Equal([deadFile], OutputFile.ReclaimLeftovers(_dir.Path));
        Assert.False(File.Exists(deadFile));
        Assert.True(File.Exists(liveFile) && File.Exists(oldFormat) && File.Exists(userFile));
    }

    [Fact]
    public async Task A_written_file_replaces_a_regular_file_and_leaves_no_partial()
    {
        string path = _dir.Combine("meta.json");
        File.WriteAllText(path, "old");
        await OutputFile.WriteAllBytesAsync(path, "new"u8.ToArray(), "metadata file", CancellationToken.None);
        Assert.Equal("new", File.ReadAllText(path));
        Assert.Equal(["meta.json"], Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void An_uncommitted_output_deletes_its_partial_file()
    {
        string partial;
        using (OutputFile output = OutputFile.Begin(_dir.Combine("x")))
        {
            partial = output.PartialPath;
            File.WriteAllText(partial, "half");
        }
        Assert.False(File.Exists(partial));
    }

    [Fact]
    public void A_missing_directory_and_a_file_as_directory_are_named()
    {
        var missing = Assert.Throws<VesselException>(() => OutputFile.Check(_dir.Combine("no", "x")));
        Assert.Equal(VesselErrorReason.NotFound, missing.Reason);
        Assert.Contains("does not exist", missing.Message, StringComparison.Ordinal);
        File.WriteAllText(_dir.Combine("f"), "");
        var notDir = Assert.Throws<VesselException>(() => OutputFile.Check(_dir.Combine("f", "x")));
        Assert.Contains("is not a directory", notDir.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_symlink_to_a_directory_is_refused_as_a_symlink()
    {
        Directory.CreateDirectory(_dir.Combine("d"));
        File.CreateSymbolicLink(_dir.Combine("link"), "d");
        var e = Assert.Throws<VesselException>(() => OutputFile.Check(_dir.Combine("link")));
        Assert.Contains("is a symlink", e.Message, StringComparison.Ordinal);
    }
}
