namespace Vessel.IntegrationTests.Containerd;

/// <summary>A fact of the containerd collection: <see cref="ContainerdFixture.Requirements"/>, and <see cref="ContainerdFixture.TestTimeout"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ContainerdFactAttribute : RequiresFactAttribute
{
    public ContainerdFactAttribute()
        : base(ContainerdFixture.Requirements)
    {
        Timeout = ContainerdFixture.TestTimeout;
    }
}
