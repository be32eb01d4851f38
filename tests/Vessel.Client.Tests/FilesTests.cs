namespace Vessel.Client.Tests;

public sealed class FilesTests
{
    [Fact(Timeout = 30_000)]
    public async Task An_upload_streams_the_callers_stream_before_it_is_read_to_its_end()
    {
        var firstBytesArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        long received = 0;
        string? path = null;
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            Assert.Equal("PUT", context.Request.Method);
            path = context.Request.Query["path"];
            byte[] buffer = new byte[65536];
            int n;
            while ((n = await context.Request.Body.ReadAsync(buffer)) > 0)
            {
                received += n;
                firstBytesArrived.TrySetResult();
            }
            context.Response.StatusCode = 204;
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");
        // 8 MiB whose second half is produced only after the daemon has received the first bytes:
        // a client that buffered the upload whole would wait forever (the test's timeout).
        await using var source = new GatedStream(4 << 20, 4 << 20, firstBytesArrived.Task);

        await sandbox.Files.WriteAsync("/root/big file&.bin", source);

        Assert.Equal(8L << 20, received);
        Assert.Equal("/root/big file&.bin", path);
        Assert.True(source.CanRead, "the caller's stream stays open");
    }

    [Fact(Timeout = 30_000)]
    public async Task A_download_is_a_stream_that_yields_bytes_before_the_daemon_sent_them_all()
    {
        var clientGotFirstChunk = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            context.Response.ContentType = "application/octet-stream";
            await context.Response.Body.WriteAsync(new byte[1000]);
            await context.Response.Body.FlushAsync();
            await clientGotFirstChunk.Task.WaitAsync(context.RequestAborted);
            await context.Response.Body.WriteAsync(new byte[500]);
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");

        await using Stream stream = await sandbox.Files.OpenReadAsync("/var/log/app.log");
        byte[] buffer = new byte[4096];
        int total = await stream.ReadAsync(buffer);
        clientGotFirstChunk.SetResult();
        int n;
        while ((n = await stream.ReadAsync(buffer)) > 0)
        {
            total += n;
        }

        Assert.Equal(1500, total);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_daemon_that_dies_mid_download_gives_a_connection_exception()
    {
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            context.Response.ContentLength = 1 << 20;
            await context.Response.Body.WriteAsync(new byte[1000]);
            await context.Response.Body.FlushAsync();
            context.Abort();
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");

        var e = await Assert.ThrowsAsync<VesselConnectionException>(() => sandbox.Files.ReadAllBytesAsync("/root/a.bin"));

        Assert.Contains("read /root/a.bin in sandbox sb", e.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task Write_and_read_round_trip_bytes_and_text()
    {
        var files = new Dictionary<string, byte[]>();
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            string path = context.Request.Query["path"]!;
            if (context.Request.Method == "PUT")
            {
                using var ms = new MemoryStream();
                await context.Request.Body.CopyToAsync(ms);
                files[path] = ms.ToArray();
                context.Response.StatusCode = 204;
            }
            else if (files.TryGetValue(path, out byte[]? data))
            {
                await context.Response.Body.WriteAsync(data);
            }
            else
            {
                await ProblemAsync(context, 404, "File not found", $"{path}: no such file.");
            }
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");

        await sandbox.Files.WriteAsync("/a.bin", new byte[] { 1, 2, 3 });
        await sandbox.Files.WriteAsync("/b.txt", "héllo");
        var missing = await Assert.ThrowsAsync<VesselApiException>(() => sandbox.Files.ReadAllBytesAsync("/nope"));

        Assert.Equal([1, 2, 3], await sandbox.Files.ReadAllBytesAsync("/a.bin"));
        Assert.Equal("héllo", await sandbox.Files.ReadAllTextAsync("/b.txt"));
        Assert.IsNotType<SandboxNotFoundException>(missing);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("/nope: no such file.", missing.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 30_000)]
    public async Task List_stat_mkdir_move_and_delete_use_their_routes()
    {
        var calls = new List<string>();
        await using var daemon = await StartAsync(WithSandbox(async context =>
        {
            string body = context.Request.Method == "POST" ? await BodyAsync(context) : "";
            calls.Add($"{context.Request.Method} {context.Request.Path}{context.Request.QueryString} {body}".TrimEnd());
            switch (context.Request.Path.Value)
            {
                case "/sandboxes/sb/files/list":
                    await JsonAsync(context, 200, """[{"name":"a","path":"/root/a","type":"dir","size":4096,"mode":493,"owner":"root","mtime":"2026-12-06T15:00:00Z"},{"path":"/root/b","type":"file","size":3}]""");
                    break;
                case "/sandboxes/sb/files/stat":
                    await JsonAsync(context, 200, """{"name":"b","path":"/root/b","type":"file","size":3,"mode":420}""");
                    break;
                default:
                    context.Response.StatusCode = 204;
                    break;
            }
        }));
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");

        var entries = await sandbox.Files.ListAsync("/root", depth: 2);
        FileEntry stat = await sandbox.Files.StatAsync("/root/b");
        await sandbox.Files.MakeDirectoryAsync("/root/new dir");
        await sandbox.Files.MoveAsync("/root/b", "/root/c");
        await sandbox.Files.DeleteAsync("/root/c");

        Assert.Equal(["a", "b"], entries.Select(e => e.Name));
        Assert.True(entries[0].IsDirectory);
        Assert.Equal(493, entries[0].Mode);
        Assert.Equal(3, stat.Size);
        Assert.Equal(
            ["GET /sandboxes/sb/files/list?path=%2Froot&depth=2", "GET /sandboxes/sb/files/stat?path=%2Froot%2Fb",
             "POST /sandboxes/sb/files/mkdir?path=%2Froot%2Fnew%20dir", "POST /sandboxes/sb/files/move {\"from\":\"/root/b\",\"to\":\"/root/c\"}",
             "DELETE /sandboxes/sb/files?path=%2Froot%2Fc"],
            calls);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_404_on_a_file_route_is_SandboxNotFoundException_only_when_the_sandbox_route_says_so_too()
    {
        bool sandboxGone = false;
        await using var daemon = await StartAsync(async context =>
        {
            if (context.Request.Path.Value == "/sandboxes/sb")
            {
                await (sandboxGone ? ProblemAsync(context, 404, "Not Found", "There is no sandbox 'sb'.") : SandboxAsync(context, "sb"));
                return;
            }
            await ProblemAsync(context, 404, "Not Found", sandboxGone ? "There is no sandbox 'sb'." : "/x: no such file or directory");
        });
        await using VesselClient client = daemon.CreateClient();
        Sandbox sandbox = await client.Sandboxes.ConnectAsync("sb");

        var file = await Assert.ThrowsAsync<VesselApiException>(() => sandbox.Files.StatAsync("/x"));
        sandboxGone = true;
        var gone = await Assert.ThrowsAsync<SandboxNotFoundException>(() => sandbox.Files.StatAsync("/x"));

        Assert.IsNotType<SandboxNotFoundException>(file);
        Assert.Equal("sb", gone.SandboxId);
        Assert.Contains("There is no sandbox 'sb'.", gone.Message, StringComparison.Ordinal);
    }

    /// <summary>A stream of zeros whose second part is readable only after <paramref name="gate"/> completed.</summary>
    private sealed class GatedStream(long before, long after, Task gate) : Stream
    {
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("the upload must read asynchronously");

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_position == before)
            {
                await gate.WaitAsync(cancellationToken);
            }
            long limit = _position < before ? before : before + after;
            int n = (int)Math.Min(buffer.Length, limit - _position);
            buffer.Span[..n].Clear();
            _position += n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
