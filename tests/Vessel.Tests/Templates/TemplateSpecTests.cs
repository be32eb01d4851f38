namespace Vessel.Tests.Templates;

public sealed class TemplateSpecTests
{
    private const string Good = """
        {
          // a comment
          "name": "web",
          "from": "alpine:3.20",
          "diskSize": "2G",
          "reservedMb": 256,
          "cpu": 2,
          "memoryMb": 512,
          "steps": [
            { "run": "apk add curl" },
            { "copy": { "src": "app", "dest": "/app" } },
            { "env": { "PORT": "8080", "MODE": "prod" } },
            { "workdir": "/app" },
            { "user": "app" },
          ],
          "start": "./serve",
          "ready": "true"
        }
        """;

    [Fact]
    public void Reads_every_field_and_step()
    {
        TemplateSpec spec = TemplateSpecReader.Parse(Good, "spec.json", "/ctx");
        Assert.Equal("web", spec.Name);
        Assert.Equal("alpine:3.20", spec.FromImage);
        Assert.Equal(2L << 30, spec.DiskSizeBytes);
        Assert.Equal(256, spec.ReservedMb);
        Assert.Equal(2, spec.Cpu);
        Assert.Equal(512, spec.MemoryMb);
        Assert.Equal("/ctx", spec.ContextDirectory);
        Assert.Equal(
            [
                new TemplateStep(StepKind.Run, ["apk add curl"]),
                new TemplateStep(StepKind.Copy, ["app", "/app"]),
                new TemplateStep(StepKind.Env, ["PORT", "8080", "MODE", "prod"]),
                new TemplateStep(StepKind.Workdir, ["/app"]),
                new TemplateStep(StepKind.User, ["app"]),
            ],
            spec.Steps);
        Assert.Equal(10, spec.Steps[0].Line);
        Assert.Equal("./serve", spec.Start);
    }

    [Fact]
    public void Fluent_api_gives_the_same_spec_as_the_file()
    {
        TemplateSpec file = TemplateSpecReader.Parse(Good, "spec.json", "/ctx");
        TemplateSpec code = Template.From("alpine:3.20").Named("web").DiskSize("2G").ReservedMb(256).Cpu(2).MemoryMb(512)
            .Run("apk add curl").Copy("app", "/app").Env("PORT", "8080").Workdir("/app").User("app").Start("./serve").Ready("true").Context("/ctx").ToSpec();
        Assert.Equal(file.Steps.Take(2), code.Steps.Take(2));
        Assert.Equal(PhaseHash.Finalize("x", file), PhaseHash.Finalize("x", code));
    }

    [Fact]
    public void Reports_every_problem_with_its_field_and_line()
    {
        const string Bad = """
            {
              "name": "Web App",
              "from": "alpine",
              "dikSize": "2G",
              "cpu": "two",
              "steps": [
                { "copy": { "src": "../secret", "dest": "relative" } },
                { "rnu": "x" },
                { "env": { "1BAD": "v" } },
                { "run": "a", "user": "b" }
              ],
              "ready": "true"
            }
            """;
        TemplateSpecException e = Assert.Throws<TemplateSpecException>(() => TemplateSpecReader.Parse(Bad, "spec.json", "/ctx"));
        string[] lines = e.Message.Split('\n');
        Assert.Contains(e.Errors, x => x is { Field: "name", Line: 2 });
        Assert.Contains(e.Errors, x => x.Field == "dikSize" && x.Line == 4 && x.Message.Contains("did you mean 'diskSize'", StringComparison.Ordinal));
        Assert.Contains(e.Errors, x => x.Field == "cpu" && x.Line == 5 && x.Message.Contains("must be a number", StringComparison.Ordinal));
        Assert.Contains(e.Errors, x => x.Field == "steps[0].copy.src" && x.Line == 7);
        Assert.Contains(e.Errors, x => x.Field == "steps[0].copy.dest" && x.Line == 7);
        Assert.Contains(e.Errors, x => x.Field == "steps[1].rnu" && x.Line == 8 && x.Message.Contains("did you mean 'run'", StringComparison.Ordinal));
        Assert.Contains(e.Errors, x => x.Field == "steps[2].env" && x.Line == 9);
        Assert.Contains(e.Errors, x => x.Field == "steps[3].user" && x.Line == 10 && x.Message.Contains("exactly one key", StringComparison.Ordinal));
        Assert.Contains(e.Errors, x => x.Field == "ready" && x.Line == 12 && x.Message.Contains("needs a start command", StringComparison.Ordinal));
        Assert.StartsWith("spec.json: 9 problems:", lines[0], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", ", "(syntax)")]
    [InlineData("[1, 2]", "(spec)")]
    [InlineData("{ \"name\": \"a\" }", "from")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"fromTemplate\": \"b\" }", "fromTemplate")]
    [InlineData("{ \"name\": \"a\", \"fromTemplate\": \"a\" }", "fromTemplate")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"diskSize\": \"1M\" }", "diskSize")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"diskSize\": \"100000001\" }", "diskSize")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"diskSize\": \"1G\", \"reservedMb\": 600 }", "reservedMb")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"memoryMb\": 1 }", "memoryMb")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"steps\": [ { \"workdir\": \"app\" } ] }", "steps[0].workdir")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"steps\": [ {} ] }", "steps[0]")]
    [InlineData("{ \"name\": \"a\", \"name\": \"b\", \"from\": \"x\" }", "name")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"network\": { \"outbound\": \"sideways\" } }", "network.outbound")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"network\": { \"deny\": [\"10.0.0.0/40\"] } }", "network.deny")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"network\": { \"outbound\": \"off\", \"allow\": [\"10.0.0.0/8\"] } }", "network")]
    [InlineData("{ \"name\": \"a\", \"from\": \"x\", \"network\": { \"outbund\": \"on\" } }", "network.outbund")]
    public void Rejects_bad_specs_naming_the_field(string json, string field)
    {
        TemplateSpecException e = Assert.Throws<TemplateSpecException>(() => TemplateSpecReader.Parse(json, "s.json", "/"));
        Assert.Contains(e.Errors, x => x.Field == field && x.Line >= 1);
    }

    [Fact]
    public void Fluent_api_validates_with_the_same_rules()
    {
        TemplateSpecException e = Assert.Throws<TemplateSpecException>(() => Template.From("alpine").Named("x").Workdir("rel").Ready("true").ToSpec());
        Assert.Equal(["steps[0].workdir", "ready"], e.Errors.Select(x => x.Field));
        Assert.All(e.Errors, x => Assert.Equal(0, x.Line));
    }

    [Fact]
    public void Writer_round_trips_through_the_reader()
    {
        TemplateSpec spec = TemplateSpecReader.Parse(Good, "spec.json", "/ctx");
        TemplateSpec again = TemplateSpecReader.Parse(TemplateSpecWriter.ToJson(spec), "again.json", "/ctx");
        Assert.Equal(spec.Steps, again.Steps);
        Assert.Equal(PhaseHash.Finalize("h", spec), PhaseHash.Finalize("h", again));
        Assert.Equal(spec.DiskSizeBytes, again.DiskSizeBytes);
    }

    [Fact]
    public void A_network_field_is_read_and_written_back()
    {
        const string Json = "{ \"name\": \"a\", \"from\": \"x\", \"network\": { \"outbound\": \"restrict\", \"allow\": [\"10.1.0.0/16\", \"localhost:5432\"], \"deny\": [\"10.1.2.3:22\"] } }";
        TemplateSpec spec = TemplateSpecReader.Parse(Json, "s.json", "/");
        Assert.Equal(Vessel.Vmm.NetworkOutbound.Restrict, spec.Network!.Outbound);
        Assert.Equal(["10.1.0.0/16", "localhost:5432"], spec.Network.Allow.Select(r => r.ToString()));
        Assert.Equal(["10.1.2.3:22"], spec.Network.Deny.Select(r => r.ToString()));
        TemplateSpec again = TemplateSpecReader.Parse(TemplateSpecWriter.ToJson(spec), "again.json", "/");
        Assert.Equal(spec.Network.Outbound, again.Network!.Outbound);
        Assert.Equal(spec.Network.Allow, again.Network.Allow);
        Assert.Equal(spec.Network.Deny, again.Network.Deny);
        Assert.Null(TemplateSpecReader.Parse("{ \"name\": \"a\", \"from\": \"x\" }", "s.json", "/").Network);
    }
}
