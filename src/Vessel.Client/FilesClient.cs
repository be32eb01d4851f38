using System.Net.Http.Headers;
using System.Text;
using Vessel.Client.Wire;

namespace Vessel.Client;

/// <summary>
/// Reads and writes one sandbox's files: <see cref="Sandbox.Files"/>. Paths are absolute guest
/// paths; the daemon confines them to the guest. Contents stream both ways: nothing is held
/// whole in memory unless a method says so (<see cref="ReadAllBytesAsync"/>).
/// </summary>
public sealed class FilesClient
{
    private readonly SandboxRoute _files;

    internal FilesClient(SandboxRoute sandbox)
    {
        _files = sandbox.Below("files");
    }

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/>, streaming it (replaces an existing file).</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="content">Read to its end; not disposed.</param>
    /// <param name="cancellationToken">Cancels the upload.</param>
    /// <returns>A task that completes when the file is written.</returns>
    public Task WriteAsync(string path, Stream content, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        return UploadAsync(path, new StreamContent(new NonDisposingStream(content)), cancellationToken);
    }

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/> (replaces an existing file).</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="content">The bytes.</param>
    /// <param name="cancellationToken">Cancels the upload.</param>
    /// <returns>A task that completes when the file is written.</returns>
    public Task WriteAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
        => UploadAsync(path, new ReadOnlyMemoryContent(content), cancellationToken);

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/> (replaces an existing file).</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="content">The bytes.</param>
    /// <param name="cancellationToken">Cancels the upload.</param>
    /// <returns>A task that completes when the file is written.</returns>
    public Task WriteAsync(string path, byte[] content, CancellationToken cancellationToken = default)
        => WriteAsync(path, content.AsMemory(), cancellationToken);

    /// <summary>Writes <paramref name="text"/> to <paramref name="path"/> as UTF-8 (replaces an existing file).</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="text">The text.</param>
    /// <param name="cancellationToken">Cancels the upload.</param>
    /// <returns>A task that completes when the file is written.</returns>
    public Task WriteAsync(string path, string text, CancellationToken cancellationToken = default)
        => WriteAsync(path, Encoding.UTF8.GetBytes(text).AsMemory(), cancellationToken);

    /// <summary>Opens a file for reading; the bytes stream from the guest as the caller reads. Dispose the stream.</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="cancellationToken">Cancels opening (reads take their own token).</param>
    /// <returns>A read-only, forward-only stream.</returns>
    /// <exception cref="VesselApiException">404 when the file does not exist.</exception>
    public async Task<Stream> OpenReadAsync(string path, CancellationToken cancellationToken = default)
    {
        ApiCall call = Call($"read {path}");
        (HttpResponseMessage response, Stream body) = await _files.Transport.OpenStreamAsync(HttpMethod.Get, Route("", path), null, call, cancellationToken);
        return new DownloadStream(response, body, e => _files.Transport.Broken(call, e));
    }

    /// <summary>Reads a whole file into memory (use <see cref="OpenReadAsync"/> for large ones).</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <returns>The file's bytes.</returns>
    public async Task<byte[]> ReadAllBytesAsync(string path, CancellationToken cancellationToken = default)
    {
        await using Stream stream = await OpenReadAsync(path, cancellationToken);
        using var memory = new MemoryStream();
        await stream.CopyToAsync(memory, cancellationToken);
        return memory.ToArray();
    }

    /// <summary>Reads a whole file as UTF-8 text.</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <returns>The text.</returns>
    public async Task<string> ReadAllTextAsync(string path, CancellationToken cancellationToken = default)
        => Encoding.UTF8.GetString(await ReadAllBytesAsync(path, cancellationToken));

    /// <summary>Lists a directory.</summary>
    /// <param name="path">The guest directory.</param>
    /// <param name="depth">How deep to go: 1 lists the directory's own entries.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The entries.</returns>
    public async Task<IReadOnlyList<FileEntry>> ListAsync(string path, int depth = 1, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        ApiCall call = Call($"list {path}");
        List<FileEntryWire> wires = await _files.Transport.SendAsync(HttpMethod.Get, Route("/list", path) + "&depth=" + depth, null, WireJson.Default.ListFileEntryWire, call, cancellationToken);
        return wires.Select(w => ToEntry(w, call)).ToList();
    }

    /// <summary>Describes one file, directory or link.</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>The entry.</returns>
    /// <exception cref="VesselApiException">404 when it does not exist.</exception>
    public async Task<FileEntry> StatAsync(string path, CancellationToken cancellationToken = default)
    {
        ApiCall call = Call($"stat {path}");
        return ToEntry(await _files.Transport.SendAsync(HttpMethod.Get, Route("/stat", path), null, WireJson.Default.FileEntryWire, call, cancellationToken), call);
    }

    /// <summary>Creates a directory and its missing parents.</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when it exists.</returns>
    public Task MakeDirectoryAsync(string path, CancellationToken cancellationToken = default)
        => _files.Transport.SendAsync(HttpMethod.Post, Route("/mkdir", path), null, Call($"create directory {path}"), cancellationToken);

    /// <summary>Renames or moves a file or directory.</summary>
    /// <param name="from">The current guest path.</param>
    /// <param name="to">The new guest path.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when it moved.</returns>
    public Task MoveAsync(string from, string to, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(from);
        ArgumentException.ThrowIfNullOrEmpty(to);
        return _files.Transport.SendAsync(HttpMethod.Post, _files.Path + "/move", JsonBody.Create(new MoveRequest { From = from, To = to }, WireJson.Default.MoveRequest),
            Call($"move {from} to {to}"), cancellationToken);
    }

    /// <summary>Deletes a file, or a directory with its contents.</summary>
    /// <param name="path">The guest path.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A task that completes when it is gone.</returns>
    public Task DeleteAsync(string path, CancellationToken cancellationToken = default)
        => _files.Transport.SendAsync(HttpMethod.Delete, Route("", path), null, Call($"delete {path}"), cancellationToken);

    private Task UploadAsync(string path, HttpContent content, CancellationToken cancellationToken)
    {
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return _files.Transport.SendAsync(HttpMethod.Put, Route("", path), content, Call($"write {path}"), cancellationToken, timed: false);
    }

    private ApiCall Call(string what) => _files.Call(what, notFoundIsSandbox: false);

    private string Route(string suffix, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return $"{_files.Path}{suffix}?path={Uri.EscapeDataString(path)}";
    }

    private FileEntry ToEntry(FileEntryWire w, ApiCall call) => new()
    {
        Name = w.Name ?? System.IO.Path.GetFileName(w.Path) ?? throw _files.Transport.Malformed(call, "a file entry without a name"),
        Path = w.Path ?? throw _files.Transport.Malformed(call, "a file entry without a path"),
        Type = w.Type ?? "file",
        Size = w.Size ?? 0,
        Mode = w.Mode ?? 0,
        Owner = w.Owner,
        ModifiedAt = w.Mtime,
        LinkTarget = w.LinkTarget,
    };
}
