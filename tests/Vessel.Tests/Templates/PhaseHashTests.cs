using Vessel.Templates;
using Xunit;

namespace Vessel.Tests.Templates;

public sealed class PhaseHashTests
{
    private static readonly BuildEnvironment s_env = new() { AgentVersion = "a1", KernelVersion = "k1" };

    [Fact]
    public void Base_hash_changes_with_every_input()
    {
        string h = PhaseHash.BaseFromImage("sha256:aa", s_env, 1L << 30, 0);
        Assert.Equal(h, PhaseHash.BaseFromImage("sha256:aa", s_env, 1L << 30, 0));
        Assert.All(
            new[]
            {
                PhaseHash.BaseFromImage("sha256:ab", s_env, 1L << 30, 0),
                PhaseHash.BaseFromImage("sha256:aa", s_env with { AgentVersion = "a2" }, 1L << 30, 0),
                PhaseHash.BaseFromImage("sha256:aa", s_env with { KernelVersion = "k2" }, 1L << 30, 0),
                PhaseHash.BaseFromImage("sha256:aa", s_env with { ProvisioningVersion = 99 }, 1L << 30, 0),
                PhaseHash.BaseFromImage("sha256:aa", s_env, 2L << 30, 0),
                PhaseHash.BaseFromImage("sha256:aa", s_env, null, 0),
                PhaseHash.BaseFromImage("sha256:aa", s_env, 1L << 30, 256),
                PhaseHash.BaseFromTemplate("sha256:aa", s_env, 1L << 30, 0),
            },
            other => Assert.NotEqual(h, other));
    }

    [Fact]
    public void Step_hashes_chain_and_cover_kind_arguments_and_copied_files()
    {
        var run = new TemplateStep(StepKind.Run, ["echo a"]);
        string h1 = PhaseHash.Step("base1", run, null);
        Assert.NotEqual(h1, PhaseHash.Step("base2", run, null));
        Assert.NotEqual(h1, PhaseHash.Step("base1", new TemplateStep(StepKind.Run, ["echo b"]), null));
        Assert.NotEqual(h1, PhaseHash.Step("base1", new TemplateStep(StepKind.Workdir, ["echo a"]), null));
        var copy = new TemplateStep(StepKind.Copy, ["a", "/b"]);
        Assert.NotEqual(PhaseHash.Step("base1", copy, "files1"), PhaseHash.Step("base1", copy, "files2"));
        // Length-prefixed fields: moving a boundary changes the hash.
        Assert.NotEqual(
            PhaseHash.Step("b", new TemplateStep(StepKind.Env, ["A", "B=C"]), null),
            PhaseHash.Step("b", new TemplateStep(StepKind.Env, ["A=B", "C"]), null));
    }

    [Fact]
    public void Finalize_hash_covers_the_vm_shape_and_commands()
    {
        TemplateSpec spec = Template.From("x").Named("t").Start("s").Ready("r").ToSpec();
        string h = PhaseHash.Finalize("p", spec);
        Assert.NotEqual(h, PhaseHash.Finalize("p", spec with { Cpu = 2 }));
        Assert.NotEqual(h, PhaseHash.Finalize("p", spec with { MemoryMb = 512 }));
        Assert.NotEqual(h, PhaseHash.Finalize("p", spec with { Start = "s2" }));
        Assert.NotEqual(h, PhaseHash.Finalize("p", spec with { Ready = null }));
        Assert.NotEqual(h, PhaseHash.Finalize("q", spec));
    }
}
