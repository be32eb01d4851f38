namespace Vessel.Tests.Oci;

public sealed class ImageConfigTests
{
    private const string DockerConfig = """
        {"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","A=b c"],"Entrypoint":null,"Cmd":["/bin/sh","-c","echo hi"],
         "WorkingDir":"/srv","User":"1000:1000","Labels":{"org.example":"x"}},
         "rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},
         "history":[{"created_by":"x"}]}
        """;

    [Fact]
    public void Parse_reads_a_docker_config_with_nulls()
    {
        ImageConfig c = ImageConfig.Parse(Encoding.UTF8.GetBytes(DockerConfig), "config");
        Assert.Equal(["PATH=/usr/bin", "A=b c"], c.Env);
        Assert.Null(c.Entrypoint);
        Assert.Equal(["/bin/sh", "-c", "echo hi"], c.Cmd);
        Assert.Equal("/srv", c.WorkingDir);
        Assert.Equal("1000:1000", c.User);
        Assert.Equal("x", c.Labels["org.example"]);
        Assert.Single(c.DiffIds);
    }

    [Fact(Timeout = 30_000)]
    public async Task Json_round_trips_through_a_file()
    {
        using var dir = TempDirectory.Create("vessel-test-");
        ImageConfig c = ImageConfig.Parse(Encoding.UTF8.GetBytes(DockerConfig), "config") with { Entrypoint = ["/init"] };
        string path = dir.Combine("config.json");
        await c.WriteFileAsync(path, CancellationToken.None);
        ImageConfig back = await ImageConfig.ReadFileAsync(path, CancellationToken.None);
        Assert.Equal(c.Architecture, back.Architecture);
        Assert.Equal(c.Os, back.Os);
        Assert.Equal(c.Env, back.Env);
        Assert.Equal(c.Entrypoint, back.Entrypoint);
        Assert.Equal(c.Cmd, back.Cmd);
        Assert.Equal(c.WorkingDir, back.WorkingDir);
        Assert.Equal(c.User, back.User);
        Assert.Equal(c.Labels, back.Labels);
        Assert.Equal(c.DiffIds, back.DiffIds);
        Assert.False(File.Exists(path + ".tmp"));
    }

    [Fact]
    public void Empty_config_round_trips()
    {
        ImageConfig back = ImageConfig.Parse(ImageConfig.Empty.ToJson(), "empty");
        Assert.Empty(back.Env);
        Assert.Null(back.Cmd);
        Assert.Null(back.Entrypoint);
        Assert.Equal("amd64", back.Architecture);
    }

    [Theory]
    [InlineData("{\"config\":{\"Env\":\"PATH=/bin\"}}", "'Env' is not a list of strings")]
    [InlineData("{\"config\":", "is not valid JSON")]
    [InlineData("[1,2]", "is not a JSON object")]
    [InlineData("{\"rootfs\":{\"diff_ids\":[\"sha256:../../etc\"]}}", "not a digest")]
    public void Malformed_configs_fail_naming_the_document(string json, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageConfig.Parse(Encoding.UTF8.GetBytes(json), "config of img:1"));
        Assert.Contains("config of img:1", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }
}
