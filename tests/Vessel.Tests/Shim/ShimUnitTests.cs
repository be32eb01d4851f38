using Vessel.Shim;

namespace Vessel.Tests.Shim;

public sealed class ShimUnitTests
{
    [Fact]
    public void Start_arguments_parse_as_containerd_writes_them()
    {
        // containerd 1.6 runtime/v2/shim/util.go Command + binary.go Start.
        ShimArguments a = ShimArguments.Parse(["-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock", "-publish-binary", "/usr/bin/containerd", "-id", "abc", "-debug", "start"]);
        Assert.Equal(("k8s.io", "/run/containerd/containerd.sock", "/usr/bin/containerd", "abc", true, "start"), (a.Namespace, a.Address, a.PublishBinary, a.Id, a.Debug, a.Action));
        ShimArguments d = ShimArguments.Parse(["--namespace=default", "-id=x", "-bundle", "/b", "delete"]);
        Assert.Equal(("default", "x", "/b", "delete", false), (d.Namespace, d.Id, d.Bundle, d.Action, d.Debug));
        Assert.True(ShimArguments.Parse(["-v"]).Version);
    }

    [Theory]
    [InlineData("-id")]
    [InlineData("-unknown", "x")]
    [InlineData("start", "extra")]
    public void Bad_arguments_are_refused_with_what_is_wrong(params string[] args)
    {
        var e = Assert.Throws<VesselException>(() => ShimArguments.Parse(args));
        Assert.Equal(VesselErrorReason.InvalidInput, e.Reason);
    }

    [Fact]
    public void The_socket_path_is_containerds_hash_of_address_namespace_and_id()
        => Assert.Equal("/run/containerd/s/8cb244a719603fe00870d5ce1d8e1f1db43a654cb993d107df1f1ae23ddffa59", ShimCommand.SocketPath("/run/containerd/containerd.sock", "default", "abc"));

    [Fact]
    public void An_exec_spec_gives_the_agent_args_env_cwd_and_uid_gid()
    {
        OciProcess p = OciProcess.Parse(Encoding.UTF8.GetBytes("""{"args":["sh","-c","id"],"env":["PATH=/bin","A=1"],"cwd":"/tmp","user":{"uid":1000,"gid":100},"terminal":false}"""), "exec e1");
        Vessel.Agent.ExecRequest r = p.ToExecRequest(stdin: true);
        Assert.Equal(["sh", "-c", "id"], r.Arguments);
        Assert.Equal(["PATH=/bin", "A=1"], r.Environment);
        Assert.Equal("/tmp", r.WorkingDirectory);
        Assert.Equal("1000:100", r.User);
        Assert.True(r.Stdin);
    }

    [Theory]
    [InlineData("""{"args":[]}""", "nothing to run")]
    [InlineData("""{"args":["sh"],"cwd":"relative"}""", "not absolute")]
    [InlineData("""{"args":"sh"}""", "not an array")]
    public void A_spec_the_shim_cannot_honour_is_refused(string json, string message)
    {
        var e = Assert.Throws<VesselException>(() => OciProcess.Parse(Encoding.UTF8.GetBytes(json), "exec e1"));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("web-1", "c1", "web-1")]
    [InlineData("host.example.com", "c1", "c1")]
    [InlineData(null, "my_container", "mycontainer")]
    [InlineData(null, "___", "vessel")]
    public void The_guest_hostname_is_the_specs_else_the_container_ids(string? spec, string id, string expected)
        => Assert.Equal(expected, ContainerRootfs.Hostname(spec, id));
}
