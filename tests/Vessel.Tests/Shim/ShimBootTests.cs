using Vessel.Shim;

namespace Vessel.Tests.Shim;

public sealed class ShimBootTests
{
    [Fact]
    public void A_missing_config_file_leaves_boot_artifacts_off()
    {
        ShimConfig config = ShimConfig.Load("/nonexistent/vessel/shim.toml");
        Assert.False(config.BootArtifacts);
        Assert.Equal(ArtifactMode.View, config.BootArtifactMode);
    }

    [Fact]
    public void The_config_enables_boot_artifacts_and_picks_the_mode()
    {
        ShimConfig config = ShimConfig.Parse(["# the shim", "", "[boot_artifacts]", "enabled = true  # seed 002", "mode = \"extract\""], "shim.toml");
        Assert.True(config.BootArtifacts);
        Assert.Equal(ArtifactMode.Extract, config.BootArtifactMode);
    }

    [Theory]
    [InlineData("[boot]", "shim.toml:1: unknown table [boot]")]
    [InlineData("enabled = true", "shim.toml:1: unknown key 'enabled' outside a table")]
    [InlineData("[boot_artifacts]\nenabled = yes", "shim.toml:2: enabled must be true or false")]
    [InlineData("[boot_artifacts]\nmode = \"copy\"", "shim.toml:2: mode must be \"view\" or \"extract\"")]
    [InlineData("[boot_artifacts]\nenabled", "shim.toml:2: expected 'key = value'")]
    public void A_config_the_shim_does_not_understand_is_refused_naming_the_line(string text, string expected)
    {
        var e = Assert.Throws<VesselException>(() => ShimConfig.Parse(text.Split('\n'), "shim.toml"));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Urunc_labels_name_the_artifacts_and_spec_annotations_win()
    {
        var labels = new Dictionary<string, string>
        {
            [BootAnnotations.UruncKernelKey] = "/unikernel/kernel",
            [BootAnnotations.UruncInitrdKey] = "",
            [BootAnnotations.ConfigKey] = "etc/boot.conf",
        };
        BootAnnotations? found = BootAnnotations.Find(labels, new Dictionary<string, string>(), "img");
        Assert.Equal(new BootAnnotations("/unikernel/kernel", null, "/etc/boot.conf"), found);
        BootAnnotations? overridden = BootAnnotations.Find(labels, new Dictionary<string, string> { [BootAnnotations.KernelKey] = "/boot/vmlinuz" }, "img");
        Assert.Equal("/boot/vmlinuz", overridden!.Kernel);
        Assert.Equal(["/boot/vmlinuz", "/etc/boot.conf"], overridden.Files);
    }

    [Fact]
    public void An_image_without_a_kernel_annotation_boots_the_kit_and_an_initrd_alone_is_refused()
    {
        Assert.Null(BootAnnotations.Find(new Dictionary<string, string> { ["maintainer"] = "x" }, new Dictionary<string, string>(), "img"));
        var e = Assert.Throws<VesselException>(() => BootAnnotations.Find(new Dictionary<string, string> { [BootAnnotations.InitrdKey] = "/boot/initrd" }, new Dictionary<string, string>(), "img"));
        Assert.Contains("names a boot initrd but no kernel", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("console=ttyS0 quiet\nfoo=1\n", null)]
    [InlineData("vessel.token=abc", "Vessel's boot owns")]
    [InlineData("init=/bin/sh", "Vessel's boot owns")]
    [InlineData("a=\"b c\"", "cannot carry")]
    public void A_boot_config_gives_kernel_parameters_but_never_vessels_own(string text, string? error)
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, text);
            if (error is null)
            {
                Assert.Equal(["console=ttyS0", "quiet", "foo=1"], ShimBoot.ReadParameters(file, "/etc/boot.conf", "img"));
            }
            else
            {
                var e = Assert.Throws<VesselException>(() => ShimBoot.ReadParameters(file, "/etc/boot.conf", "img"));
                Assert.Contains(error, e.Message, StringComparison.Ordinal);
                Assert.Contains("/etc/boot.conf of image 'img'", e.Message, StringComparison.Ordinal);
            }
        }
        finally
        {
            File.Delete(file);
        }
    }
}
