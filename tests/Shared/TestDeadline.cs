namespace Vessel.Testing;

/// <summary>Deadlines for tests that run external tools.</summary>
public static class TestDeadline
{
    /// <summary>
    /// A token source that cancels 15 s before xunit's timeout of <paramref name="xunitTimeoutMs"/>:
    /// the test's tools are killed and its cleanup runs before xunit gives up on it.
    /// </summary>
    public static CancellationTokenSource Before(int xunitTimeoutMs) => new(TimeSpan.FromMilliseconds(xunitTimeoutMs - 15_000));
}
