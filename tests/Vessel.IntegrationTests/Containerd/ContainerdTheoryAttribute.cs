namespace Vessel.IntegrationTests.Containerd;

/// <summary>The theory form of <see cref="ContainerdFactAttribute"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ContainerdTheoryAttribute : RequiresTheoryAttribute
{
    public ContainerdTheoryAttribute()
        : base(ContainerdFixture.Requirements)
    {
        Timeout = ContainerdFixture.TestTimeout;
    }
}
