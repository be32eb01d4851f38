namespace Vessel.Testing;

/// <summary>
/// A test class whose tests each run under one deadline. xunit builds a new instance for every
/// test (and every theory row) and disposes it after the test, so the token source made here
/// starts with the test and is released with it.
/// </summary>
public abstract class TimedTestBase : IDisposable
{
    private readonly CancellationTokenSource _deadline;

    /// <param name="timeoutMs">The test's time: usually the same as its fact's xunit <c>Timeout</c>.</param>
    protected TimedTestBase(int timeoutMs)
    {
        _deadline = new CancellationTokenSource(timeoutMs);
    }

    /// <summary>Cancelled when the test has run for the class's timeout.</summary>
    protected CancellationToken Deadline => _deadline.Token;

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            _deadline.Dispose();
        }
    }
}
