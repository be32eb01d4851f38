namespace Vessel.IntegrationTests.Service;

/// <summary>A fact that runs against a <see cref="DaemonFixture"/>: its <see cref="DaemonFixture.Requirements"/> and <paramref name="more"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class DaemonFactAttribute : RequiresFactAttribute
{
    public DaemonFactAttribute(params string[] more)
        : base([.. DaemonFixture.Requirements, .. more])
    {
    }
}
