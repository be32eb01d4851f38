using System.Text;
using System.Text.Json;

namespace Vessel.Templates;

/// <summary>Writes a spec back in the file format (for <c>template show</c> and the state database).</summary>
public static class TemplateSpecWriter
{
    public static string ToJson(TemplateSpec spec)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("name", spec.Name);
            if (spec.FromImage is not null)
            {
                w.WriteString("from", spec.FromImage);
            }
            if (spec.FromTemplate is not null)
            {
                w.WriteString("fromTemplate", spec.FromTemplate);
            }
            if (spec.DiskSizeBytes is long disk)
            {
                w.WriteString("diskSize", $"{disk >> 20}M");
            }
            w.WriteNumber("reservedMb", spec.ReservedMb);
            w.WriteNumber("cpu", spec.Cpu);
            w.WriteNumber("memoryMb", spec.MemoryMb);
            if (spec.Network is { } network)
            {
                w.WriteStartObject("network");
                w.WriteString("outbound", Vmm.NetworkConfig.FormatOutbound(network.Outbound));
                foreach ((string name, IReadOnlyList<Vmm.NetworkRule> rules) in new[] { ("allow", network.Allow), ("deny", network.Deny) })
                {
                    w.WriteStartArray(name);
                    foreach (Vmm.NetworkRule rule in rules)
                    {
                        w.WriteStringValue(rule.ToString());
                    }
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteStartArray("steps");
            foreach (TemplateStep step in spec.Steps)
            {
                w.WriteStartObject();
                switch (step.Kind)
                {
                    case StepKind.Copy:
                        w.WriteStartObject("copy");
                        w.WriteString("src", step.Arguments[0]);
                        w.WriteString("dest", step.Arguments[1]);
                        w.WriteEndObject();
                        break;
                    case StepKind.Env:
                        w.WriteStartObject("env");
                        for (int i = 0; i < step.Arguments.Count; i += 2)
                        {
                            w.WriteString(step.Arguments[i], step.Arguments[i + 1]);
                        }
                        w.WriteEndObject();
                        break;
                    default:
                        w.WriteString(step.Kind.ToString().ToLowerInvariant(), step.Arguments[0]);
                        break;
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (spec.Start is not null)
            {
                w.WriteString("start", spec.Start);
            }
            if (spec.Ready is not null)
            {
                w.WriteString("ready", spec.Ready);
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
