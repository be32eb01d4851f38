using Vessel.Shim;

namespace Vessel.Tests.Shim;

public sealed class StdinFifoTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vstdin-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Bytes_written_then_the_writer_closing_are_read_then_eof()
    {
        using StdinFifo fifo = StdinFifo.Open(MakeFifo());
        Task<string> read = Task.Run(() => ReadAll(fifo));
        await using (FileStream writer = OpenWriter())
        {
            await writer.WriteAsync("line one\nline two\n"u8.ToArray());
        }
        Assert.Equal("line one\nline two\n", await read.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Drain_with_the_writer_still_open_delivers_what_the_fifo_holds_then_eof()
    {
        using StdinFifo fifo = StdinFifo.Open(MakeFifo());
        await using FileStream writer = OpenWriter();
        await writer.WriteAsync("buffered\n"u8.ToArray());
        await writer.FlushAsync();
        await Task.Delay(50);
        Task<string> read = Task.Run(() => ReadAll(fifo));
        fifo.Drain();
        Assert.Equal("buffered\n", await read.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Drain_before_any_writer_came_ends_at_once_and_open_never_waits_for_one()
    {
        var clock = Stopwatch.StartNew();
        using StdinFifo fifo = StdinFifo.Open(MakeFifo());
        Task<string> read = Task.Run(() => ReadAll(fifo));
        await Task.Delay(100);
        Assert.False(read.IsCompleted, "a FIFO no writer opened yet must not read as EOF");
        fifo.Drain();
        Assert.Equal(string.Empty, await read.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Stop_ends_a_blocked_read_without_reading_more()
    {
        using StdinFifo fifo = StdinFifo.Open(MakeFifo());
        await using FileStream writer = OpenWriter();
        var buffer = new byte[16];
        Task<int> read = Task.Run(() => fifo.Read(buffer));
        await Task.Delay(100);
        Assert.False(read.IsCompleted);
        fifo.Stop();
        Assert.Equal(0, await read.WaitAsync(TimeSpan.FromSeconds(10)));
        fifo.Stop();
    }

    [Fact]
    public void A_missing_fifo_is_an_error_naming_it()
    {
        string path = Path.Combine(_dir, "none");
        IOException e = Assert.Throws<IOException>(() => StdinFifo.Open(path));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }

    private string MakeFifo()
    {
        string path = Path.Combine(_dir, "stdin");
        using var mkfifo = Process.Start("mkfifo", path);
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
        return path;
    }

    private FileStream OpenWriter() => new(Path.Combine(_dir, "stdin"), FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);

    private static string ReadAll(StdinFifo fifo)
    {
        var text = new StringBuilder();
        var buffer = new byte[4];
        int n;
        while ((n = fifo.Read(buffer)) > 0)
        {
            text.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return text.ToString();
    }
}
