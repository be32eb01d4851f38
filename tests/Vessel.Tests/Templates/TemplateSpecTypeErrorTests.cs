namespace Vessel.Tests.Templates;

/// <summary>
/// A value of the wrong JSON type is reported with its field, its line and what the field takes,
/// and reading goes on past it (the spec reader's one check of a value's token).
/// </summary>
public sealed class TemplateSpecTypeErrorTests
{
    public static TheoryData<string, string, string> WrongTypes => new()
    {
        { "\"from\": 3", "from", "must be a string, not a number." },
        { "\"steps\": {}", "steps", "must be an array of steps such as" },
        { "\"steps\": [\"run\"]", "steps[0]", "must be an object with one key: run, copy, env, workdir or user." },
        { "\"steps\": [{ \"copy\": \"a b\" }]", "steps[0].copy", "must be an object: { \"src\"" },
        { "\"steps\": [{ \"env\": [] }]", "steps[0].env", "must be an object of names to values" },
        { "\"network\": \"on\"", "network", "must be an object such as { \"outbound\": \"on\", \"deny\": [\"10.0.0.0/8\"] }, not a string." },
        { "\"network\": { \"deny\": \"10.0.0.0/8\" }", "network.deny", "must be an array of rules such as" },
        { "\"diskSize\": true", "diskSize", "must be a size such as \"2G\", not a boolean." },
    };

    [Theory]
    [MemberData(nameof(WrongTypes))]
    public void A_value_of_the_wrong_type_names_its_field_line_and_what_the_field_takes(string field, string expectedField, string expectedMessage)
    {
        string spec = $$"""
            {
              "name": "web",
              {{field}},
              "cpu": "two"
            }
            """;
        TemplateSpecException e = Assert.Throws<TemplateSpecException>(() => TemplateSpecReader.Parse(spec, "spec.json", "/ctx"));
        Assert.Contains(e.Errors, x => x.Field == expectedField && x.Line == 3 && x.Message.Contains(expectedMessage, StringComparison.Ordinal));
        Assert.Contains(e.Errors, x => x.Field == "cpu" && x.Line == 4);
    }
}
