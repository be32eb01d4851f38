namespace Vessel.IntegrationTests.Templates;

/// <summary>Progress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool and may report late).</summary>
internal sealed class SyncProgress(Action<BuildEvent> report) : IProgress<BuildEvent>
{
    public void Report(BuildEvent value) => report(value);
}
