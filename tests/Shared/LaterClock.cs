namespace Vessel.Testing;

/// <summary>A clock ahead of the real one, so files written by the test count as long settled (their change time is far behind "now").</summary>
public sealed class LaterClock(TimeSpan ahead) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + ahead;
}
