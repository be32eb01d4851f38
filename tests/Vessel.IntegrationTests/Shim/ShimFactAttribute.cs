namespace Vessel.IntegrationTests.Shim;

/// <summary>
/// A fact of the shim collection: <see cref="ShimFixture.Requirements"/> and
/// <paramref name="more"/>, and <see cref="ShimFixture.TestTimeout"/>.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ShimFactAttribute : RequiresFactAttribute
{
    public ShimFactAttribute(params string[] more)
        : base([.. ShimFixture.Requirements, .. more])
    {
        Timeout = ShimFixture.TestTimeout;
    }
}
