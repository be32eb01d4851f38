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

    [Fact]
    public void A_network_change_rebuilds_run_steps_and_finalize_but_no_rules_keep_the_old_hashes()
    {
        var run = new TemplateStep(StepKind.Run, ["apt-get update"]);
        var workdir = new TemplateStep(StepKind.Workdir, ["/srv"]);
        var allowA = Vessel.Vmm.NetworkConfig.Default with { Allow = [Vessel.Vmm.NetworkRule.Parse("127.0.0.1:8080")] };
        var allowB = Vessel.Vmm.NetworkConfig.Default with { Allow = [Vessel.Vmm.NetworkRule.Parse("127.0.0.1:8081")] };
        var denyA = Vessel.Vmm.NetworkConfig.Default with { Deny = [Vessel.Vmm.NetworkRule.Parse("127.0.0.1:8080")] };
        string plain = PhaseHash.Step("b", run, null);
        // The default network (written or not) hashes as before networks existed.
        Assert.Equal(plain, PhaseHash.Step("b", run, null, Vessel.Vmm.NetworkConfig.Default));
        Assert.All(
            new[]
            {
                PhaseHash.Step("b", run, null, allowA),
                PhaseHash.Step("b", run, null, allowB),
                PhaseHash.Step("b", run, null, denyA),
                PhaseHash.Step("b", run, null, Vessel.Vmm.NetworkConfig.Isolated),
                PhaseHash.Step("b", run, null, allowA with { Outbound = Vessel.Vmm.NetworkOutbound.Restrict }),
            },
            other => Assert.NotEqual(plain, other));
        Assert.NotEqual(PhaseHash.Step("b", run, null, allowA), PhaseHash.Step("b", run, null, denyA));
        // Rule order does not matter; steps that run no command ignore the network.
        var both = Vessel.Vmm.NetworkConfig.Default with { Allow = [.. allowA.Allow, .. allowB.Allow] };
        Assert.Equal(PhaseHash.Step("b", run, null, both), PhaseHash.Step("b", run, null, both with { Allow = [.. both.Allow.Reverse()] }));
        Assert.Equal(PhaseHash.Step("b", workdir, null), PhaseHash.Step("b", workdir, null, allowA));
        TemplateSpec spec = Template.From("x").Named("t").Start("s").ToSpec();
        Assert.Equal(PhaseHash.Finalize("p", spec), PhaseHash.Finalize("p", spec with { Network = Vessel.Vmm.NetworkConfig.Default }));
        Assert.NotEqual(PhaseHash.Finalize("p", spec), PhaseHash.Finalize("p", spec with { Network = allowA }));
    }
}
