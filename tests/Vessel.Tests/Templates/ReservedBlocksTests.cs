namespace Vessel.Tests.Templates;

/// <summary>The decision of seed 000, one case per call site.</summary>
public sealed class ReservedBlocksTests
{
    [Theory]
    [InlineData(256)]
    [InlineData(0)] // base always sets the value, so a child with 0 resets a parent's reserve
    public void Base_phase_always_gets_the_hook(int mb)
        => Assert.Single(ReservedBlocks.Hooks(BuildPhase.Base, mb));

    [Fact]
    public void First_uncached_step_that_boots_a_vm_gets_the_hook()
    {
        Assert.Single(ReservedBlocks.Hooks(BuildPhase.Step, 256, bootsNewVm: true));
        Assert.Empty(ReservedBlocks.Hooks(BuildPhase.Step, 256, bootsNewVm: false));
        Assert.Empty(ReservedBlocks.Hooks(BuildPhase.Step, 0, bootsNewVm: true));
    }

    [Fact]
    public void Finalize_gets_the_hook_only_when_its_source_layer_was_cached()
    {
        Assert.Single(ReservedBlocks.Hooks(BuildPhase.Finalize, 256, sourceCached: true));
        Assert.Empty(ReservedBlocks.Hooks(BuildPhase.Finalize, 256, sourceCached: false));
        Assert.Empty(ReservedBlocks.Hooks(BuildPhase.Finalize, 0, sourceCached: true));
    }

    [Fact]
    public void The_hook_names_what_it_does()
        => Assert.Contains("tune2fs -r", ReservedBlocks.Hooks(BuildPhase.Base, 64)[0].Name, StringComparison.Ordinal);
}
