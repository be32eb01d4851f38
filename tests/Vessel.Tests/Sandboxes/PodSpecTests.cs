using Vessel.Agent.Protocol;
using Vessel.Oci;
using Vessel.Sandboxes;

namespace Vessel.Tests.Sandboxes;

public sealed class PodSpecTests
{
    private static PodSpec Pod(params string[] names) => new(names.Select(n => new PodContainerSpec(n, "oci:./layout:latest")).ToList());

    [Theory]
    [InlineData("web")]
    [InlineData("a")]
    [InlineData("web-1")]
    [InlineData("0abc")]
    public void Dns_labels_are_valid_container_names(string name)
    {
        Assert.Null(ContainerNames.Problem(name));
        Pod(name).Validate();
    }

    [Theory]
    [InlineData("web_ovl", "'_ovl'")]
    [InlineData("web_ovlx", "'_ovl'")]
    [InlineData("Web", "not a DNS label")]
    [InlineData("-web", "not a DNS label")]
    [InlineData("web-", "not a DNS label")]
    [InlineData("web_1", "not a DNS label")]
    [InlineData("we.b", "not a DNS label")]
    [InlineData("", "needs a name")]
    public void A_name_that_is_not_a_dns_label_or_holds_the_derived_separator_is_refused_naming_the_field(string name, string why)
    {
        var e = Assert.Throws<VesselException>(() => Pod("ok", name).Validate());
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        Assert.StartsWith("containers[1].name:", e.Message, StringComparison.Ordinal);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_derived_id_can_never_equal_a_valid_name()
    {
        string derived = ContainerNames.Derived("web");
        Assert.Equal("web_ovl", derived);
        Assert.NotNull(ContainerNames.Problem(derived));
    }

    [Fact]
    public void Names_of_64_characters_duplicates_and_17_containers_are_refused()
    {
        Assert.Contains("at most 63", Assert.Throws<VesselException>(() => Pod(new string('a', 64)).Validate()).Message, StringComparison.Ordinal);
        Pod(new string('a', 63)).Validate();
        Assert.Contains("used twice", Assert.Throws<VesselException>(() => Pod("a", "a").Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("at most 16", Assert.Throws<VesselException>(() => Pod(Enumerable.Range(0, 17).Select(i => $"c{i}").ToArray()).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("at least one", Assert.Throws<VesselException>(() => Pod().Validate()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_upper_must_fit_in_the_guest_memory()
    {
        var e = Assert.Throws<VesselException>(() => (Pod("a") with { MemoryMiB = 256, UpperMiB = 512 }).Validate());
        Assert.StartsWith("upperMb:", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_request_overrides_the_image_config_and_adds_to_its_environment()
    {
        var config = new ImageConfig { Entrypoint = ["/entry"], Cmd = ["--flag"], Env = ["PATH=/bin", "A=1"], WorkingDir = "/srv", User = "app" };
        var plain = SandboxManager.ContainerProcess(new PodContainerSpec("a", "img"), config);
        Assert.Equal(["/entry", "--flag"], plain.Arguments);
        Assert.Equal(["PATH=/bin", "A=1"], plain.Environment);
        Assert.Equal("/srv", plain.WorkingDirectory);
        Assert.Equal("app", plain.User);

        var over = SandboxManager.ContainerProcess(
            new PodContainerSpec("a", "img") { Command = ["sleep", "1"], Env = new Dictionary<string, string> { ["A"] = "2", ["B"] = "3" }, Cwd = "/", User = "root" }, config);
        Assert.Equal(["sleep", "1"], over.Arguments);
        Assert.Equal(["PATH=/bin", "A=2", "B=3"], over.Environment);
        Assert.Equal("/", over.WorkingDirectory);
        Assert.Equal("root", over.User);

        var none = Assert.Throws<VesselException>(() => SandboxManager.ContainerProcess(new PodContainerSpec("a", "img"), ImageConfig.Empty));
        Assert.Contains("no entrypoint or cmd", none.Message, StringComparison.Ordinal);
    }
}
