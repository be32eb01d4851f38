namespace Vessel.IntegrationTests.Blocks;

/// <summary>
/// Base of the test classes that use a bucket: each test gets a real s3rver (null where npm or
/// node is missing: those tests name them in their requirements and skip) and a temp directory,
/// both gone after the test.
/// </summary>
public abstract class S3TestBase(string prefix) : IAsyncLifetime
{
    /// <summary>The chunk size the tests store with: small, so that small images span many chunks.</summary>
    protected const int Chunk = 64 << 10;

    private S3Server? _server;

    protected TempDirectory Dir { get; } = TempDirectory.Create(prefix);

    protected S3Server Server => _server!;

    public async Task InitializeAsync() => _server = await S3Server.StartIfAvailableAsync(CancellationToken.None);

    public async Task DisposeAsync()
    {
        await (_server?.DisposeAsync() ?? ValueTask.CompletedTask);
        Dir.Dispose();
    }
}
