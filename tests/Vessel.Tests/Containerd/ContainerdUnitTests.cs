using Vessel.Interop;

namespace Vessel.Tests.Containerd;

public sealed class ContainerdUnitTests
{
    [Fact]
    public void ChainId_of_one_layer_is_its_diff_id_and_deeper_chains_match_containerd()
    {
        const string L0 = "sha256:617f2b73224224f1f4915599271710573e977ca5f6e15c39b8c4fab4c89863f4";
        const string L1 = "sha256:7e8aacd376f1593b338889b2520a4b6860d58894cfa8da6c03629bd10514c54c";
        Assert.Equal(L0, ContainerdImage.ComputeChainId([L0]));
        // The key containerd 1.6 gave the committed top snapshot of an image with these diff ids.
        Assert.Equal("sha256:63c6b1ef67cc01967239e3740aa892c17cd89c69ceece630b349571d6919dd1e", ContainerdImage.ComputeChainId([L0, L1]));
    }

    [Theory]
    [InlineData("alpine", "docker.io/library/alpine:latest")]
    [InlineData("alpine:3.20", "docker.io/library/alpine:3.20")]
    [InlineData("me/app:1", "docker.io/me/app:1")]
    [InlineData("ghcr.io/me/app", "ghcr.io/me/app:latest")]
    [InlineData("localhost:5000/app:2", "localhost:5000/app:2")]
    [InlineData("docker.io/library/alpine@sha256:abc", "docker.io/library/alpine@sha256:abc")]
    public void Short_references_normalize_like_containerd_tools_store_them(string reference, string expected)
        => Assert.Equal(expected, ContainerdImage.NormalizeReference(reference));

    [Theory]
    [InlineData(5, VesselErrorReason.NotFound)]
    [InlineData(6, VesselErrorReason.AlreadyExists)]
    [InlineData(9, VesselErrorReason.Conflict)]
    [InlineData(14, VesselErrorReason.Unavailable)]
    [InlineData(12, VesselErrorReason.Unsupported)]
    [InlineData(3, VesselErrorReason.InvalidInput)]
    [InlineData(4, VesselErrorReason.Timeout)]
    [InlineData(15, VesselErrorReason.Corrupt)]
    public void Grpc_statuses_map_to_reasons_and_keep_the_message(int code, VesselErrorReason reason)
    {
        VesselException e = GrpcStatus.ToException((Grpc.Core.StatusCode)code, "/containerd.services.snapshots.v1.Snapshots/View", "snapshot x: already exists");
        Assert.Equal(reason, e.Reason);
        Assert.StartsWith("containerd Snapshots/View: ", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("snapshot x: already exists", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("boot/vmlinuz", "/boot/vmlinuz")]
    [InlineData("/boot//./vmlinuz", "/boot/vmlinuz")]
    [InlineData("../../etc/../boot/vmlinuz", "/boot/vmlinuz")]
    [InlineData("/a/b/../../c", "/c")]
    public void Image_paths_clean_lexically_and_never_climb_above_the_root(string input, string expected)
        => Assert.Equal(expected, ImagePath.CleanRequested(input));

    [Fact]
    public void Resolving_in_a_tree_follows_symlinks_inside_it_and_never_on_the_host()
    {
        using TempDirectory dir = TempDirectory.Create();
        string root = dir.Combine("root");
        Directory.CreateDirectory(Path.Combine(root, "boot"));
        Directory.CreateDirectory(Path.Combine(root, "etc"));
        File.WriteAllText(Path.Combine(root, "boot/vmlinuz-6.1"), "kernel");
        File.WriteAllText(Path.Combine(root, "etc/hostname"), "image");
        File.CreateSymbolicLink(Path.Combine(root, "boot/vmlinuz"), "vmlinuz-6.1");
        File.CreateSymbolicLink(Path.Combine(root, "abs"), "/boot/vmlinuz");
        File.CreateSymbolicLink(Path.Combine(root, "up"), "../../../../../etc/hostname");
        Directory.CreateSymbolicLink(Path.Combine(root, "b"), "/boot");
        File.CreateSymbolicLink(Path.Combine(root, "loop"), "loop");
        File.CreateSymbolicLink(Path.Combine(root, "host"), "/etc/os-release");

        Assert.Equal(Path.Combine(root, "boot/vmlinuz-6.1"), ImagePath.ResolveInTree(root, "/boot/vmlinuz", "img"));
        Assert.Equal(Path.Combine(root, "boot/vmlinuz-6.1"), ImagePath.ResolveInTree(root, "/abs", "img"));
        Assert.Equal(Path.Combine(root, "boot/vmlinuz-6.1"), ImagePath.ResolveInTree(root, "/b/vmlinuz", "img"));
        Assert.Equal(Path.Combine(root, "etc/hostname"), ImagePath.ResolveInTree(root, "/up", "img"));
        Assert.Contains("too many levels", Assert.Throws<VesselException>(() => ImagePath.ResolveInTree(root, "/loop", "img")).Message, StringComparison.Ordinal);
        // The host has /etc/os-release; the image does not.
        VesselException missing = Assert.Throws<VesselException>(() => ImagePath.ResolveInTree(root, "/host", "img"));
        Assert.Equal(VesselErrorReason.NotFound, missing.Reason);
        Assert.Contains("Image 'img' has no file '/host'", missing.Message, StringComparison.Ordinal);
        Assert.Contains("directory", Assert.Throws<VesselException>(() => ImagePath.ResolveInTree(root, "/boot", "img")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Mount_options_split_into_flags_and_data_like_containerd()
    {
        (ulong flags, string data) = LinuxMount.ParseOptions(["ro", "rbind"]);
        Assert.Equal(LibC.MsRdonly | LibC.MsBind | LibC.MsRec, flags);
        Assert.Equal(string.Empty, data);
        (flags, data) = LinuxMount.ParseOptions(["index=off", "lowerdir=/a:/b", "nosuid"]);
        Assert.Equal(LibC.MsNosuid, flags);
        Assert.Equal("index=off,lowerdir=/a:/b", data);
    }

    [Fact]
    public void Mountinfo_escapes_decode()
        => Assert.Equal("/tmp/a b\tc\\d", LinuxMount.UnescapeMountInfo(@"/tmp/a\040b\011c\134d"));

    [Fact]
    public void View_state_saves_atomically_and_loads_back()
    {
        using TempDirectory dir = TempDirectory.Create();
        var state = new ViewState
        {
            Address = "/run/containerd/containerd.sock",
            Namespace = "k8s.io",
            Image = "docker.io/library/x:1",
            LeaseId = "vessel-abc",
            ViewKey = "vessel-view-abc",
            Mountpoint = dir.Combine("vessel-view"),
            Mounts = [new MountRecord { Type = "bind", Source = "/x/fs", Options = ["ro", "rbind"] }],
            Files = [new FileRecord { Path = "/boot/vmlinuz", Target = "/out/boot/vmlinuz" }],
            Created = ["/out", "/out/boot"],
        };
        state.Save(dir.Path);
        Assert.False(File.Exists(ViewState.PathIn(dir.Path) + ".tmp"));
        ViewState loaded = ViewState.Load(dir.Path)!;
        Assert.Equal("vessel-view-abc", loaded.ViewKey);
        Assert.Equal(["ro", "rbind"], loaded.Mounts[0].Options);
        Assert.Equal("/boot/vmlinuz", loaded.Files[0].Path);
        Assert.Equal(["/out", "/out/boot"], loaded.Created);
        string json = File.ReadAllText(ViewState.PathIn(dir.Path));
        Assert.Contains("\"leaseId\": \"vessel-abc\"", json, StringComparison.Ordinal);

        File.WriteAllText(ViewState.PathIn(dir.Path), "{\"version\": 99}");
        Assert.Equal(VesselErrorReason.Unsupported, Assert.Throws<VesselException>(() => ViewState.Load(dir.Path)).Reason);
        File.WriteAllText(ViewState.PathIn(dir.Path), "{not json");
        Assert.Equal(VesselErrorReason.Corrupt, Assert.Throws<VesselException>(() => ViewState.Load(dir.Path)).Reason);
        ViewState.Delete(dir.Path);
        Assert.Null(ViewState.Load(dir.Path));
    }

    [Fact]
    public void Output_tree_plans_only_what_is_missing_and_refuses_symlinks_and_foreign_files()
    {
        using TempDirectory dir = TempDirectory.Create();
        string outDir = dir.Combine("out");
        OutputTree tree = OutputTree.Resolve(outDir);
        Assert.False(Directory.Exists(outDir));
        string kernel = tree.TargetFor("/boot/vmlinuz");
        string initrd = tree.TargetFor("/boot/initrd.img");
        IReadOnlyList<string> plan = tree.Plan([kernel, initrd], []);
        Assert.Equal([outDir, outDir + "/boot", kernel, initrd], plan);
        OutputTree.Create(plan, new HashSet<string> { kernel, initrd });
        Assert.True(File.Exists(kernel) && File.Exists(initrd));

        // Existing files are ours only when the state says so.
        Assert.Empty(tree.Plan([kernel], [kernel]));
        Assert.Equal(VesselErrorReason.AlreadyExists, Assert.Throws<VesselException>(() => tree.Plan([kernel], [])).Reason);

        Directory.CreateDirectory(dir.Combine("elsewhere"));
        Directory.CreateSymbolicLink(Path.Combine(outDir, "etc"), dir.Combine("elsewhere"));
        Assert.Throws<VesselException>(() => tree.Plan([tree.TargetFor("/etc/config")], []));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Combine("elsewhere")));
    }

    [Fact]
    public void The_view_is_off_unless_the_annotation_or_environment_enables_it()
    {
        using TempDirectory dir = TempDirectory.Create();
        Assert.Equal(ArtifactMode.Extract, BootArtifacts.ConfiguredMode(dir.Path));
        File.WriteAllText(dir.Combine("config.json"), "{\"annotations\":{\"" + BootArtifacts.ViewAnnotation + "\":\"true\"}}");
        Assert.Equal(ArtifactMode.View, BootArtifacts.ConfiguredMode(dir.Path));
        File.WriteAllText(dir.Combine("config.json"), "{\"annotations\":{\"" + BootArtifacts.ViewAnnotation + "\":\"false\"}}");
        Assert.Equal(ArtifactMode.Extract, BootArtifacts.ConfiguredMode(dir.Path));
    }

    [Fact]
    public void View_names_are_stable_per_bundle_and_valid_lease_ids()
    {
        var (key1, lease1) = BootArtifacts.NamesFor("/run/vessel/bundles/a");
        var (key2, lease2) = BootArtifacts.NamesFor("/run/vessel/bundles/a");
        var (key3, _) = BootArtifacts.NamesFor("/run/vessel/bundles/b");
        Assert.Equal(key1, key2);
        Assert.Equal(lease1, lease2);
        Assert.NotEqual(key1, key3);
        // containerd identifiers: alphanumerics separated by single '.', '_' or '-', at most 76 characters.
        Assert.Matches("^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$", lease1);
        Assert.True(lease1.Length <= 76);
    }
}
