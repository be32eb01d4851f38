using System.Text;
using System.Text.Json;
using Vessel.Common;

namespace Vessel.Templates;

/// <summary>
/// Reads the JSON template spec (docs/formats/template-spec.md). Comments and trailing commas
/// are allowed. Every problem is reported with its field and line, all at once: unknown
/// fields (with the closest known name), wrong types, and the rules of
/// <see cref="TemplateSpecValidator"/>.
/// </summary>
public static class TemplateSpecReader
{
    public const long MaxSpecBytes = 1 << 20; // a spec is a short text file; anything bigger is a mistake

    private static readonly string[] s_stepKinds = ["run", "copy", "env", "workdir", "user"];

    public static TemplateSpec ReadFile(string path)
    {
        string full = Path.GetFullPath(path);
        var info = new FileInfo(full);
        if (Directory.Exists(full))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"template spec '{path}' is a directory; give the spec file.");
        }
        if (!info.Exists)
        {
            throw new VesselException(VesselErrorReason.NotFound, $"template spec '{path}' does not exist.");
        }
        if (info.Length > MaxSpecBytes)
        {
            throw new TemplateSpecException($"{path}: {info.Length} bytes; a template spec is at most {MaxSpecBytes} bytes.");
        }
        return Parse(File.ReadAllBytes(full), path, Path.GetDirectoryName(full)!);
    }

    /// <summary>Parses and validates; relative <c>context</c> paths resolve against <paramref name="baseDirectory"/>.</summary>
    public static TemplateSpec Parse(ReadOnlySpan<byte> json, string source, string baseDirectory)
    {
        var parser = new Parser(json, source);
        TemplateSpec spec = parser.Run(baseDirectory);
        var errors = parser.Errors;
        errors.AddRange(TemplateSpecValidator.Validate(spec));
        if (errors.Count > 0)
        {
            throw new TemplateSpecException(source, [.. errors.OrderBy(e => e.Line)]);
        }
        return spec;
    }

    public static TemplateSpec Parse(string json, string source, string baseDirectory) => Parse(Encoding.UTF8.GetBytes(json), source, baseDirectory);

    private delegate TemplateSpec FieldReader(ref Parser parser, TemplateSpec spec, string field, string baseDirectory);

    private ref struct Parser
    {
        /// <summary>The spec's fields in the order the docs list them: each reads its value into the spec.</summary>
        private static readonly OrderedDictionary<string, FieldReader> s_fields = new(StringComparer.Ordinal)
        {
            ["name"] = static (ref p, spec, field, _) => spec with { Name = p.String(field) ?? string.Empty },
            ["from"] = static (ref p, spec, field, _) => spec with { FromImage = p.String(field) },
            ["fromTemplate"] = static (ref p, spec, field, _) => spec with { FromTemplate = p.String(field) },
            ["diskSize"] = static (ref p, spec, field, _) => spec with { DiskSizeBytes = p.Size(field) },
            ["reservedMb"] = static (ref p, spec, field, _) => spec with { ReservedMb = p.Integer(field) ?? 0 },
            ["cpu"] = static (ref p, spec, field, _) => spec with { Cpu = p.Integer(field) ?? TemplateSpec.DefaultCpu },
            ["memoryMb"] = static (ref p, spec, field, _) => spec with { MemoryMb = p.Integer(field) ?? TemplateSpec.DefaultMemoryMb },
            ["steps"] = static (ref p, spec, _, _) => spec with { Steps = p.Steps() },
            ["start"] = static (ref p, spec, field, _) => spec with { Start = p.String(field) },
            ["ready"] = static (ref p, spec, field, _) => spec with { Ready = p.String(field) },
            ["context"] = static (ref p, spec, field, baseDirectory) => p.String(field) is string context
                ? spec with { ContextDirectory = Path.GetFullPath(Path.Combine(baseDirectory, context)) }
                : spec,
            ["network"] = static (ref p, spec, field, _) => spec with { Network = p.Network(field) },
        };

        private readonly ReadOnlySpan<byte> _json;
        private readonly string _source;
        private readonly List<int> _lineStarts;
        private Utf8JsonReader _reader;

        public Parser(ReadOnlySpan<byte> json, string source)
        {
            _json = json;
            _source = source;
            _lineStarts = [0];
            for (int i = 0; i < json.Length; i++)
            {
                if (json[i] == (byte)'\n')
                {
                    _lineStarts.Add(i + 1);
                }
            }
            _reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = 16 });
            Errors = [];
        }

        public List<TemplateSpecError> Errors { get; }

        private readonly int Line => LineOf(_reader.TokenStartIndex);

        public TemplateSpec Run(string baseDirectory)
        {
            var lines = new Dictionary<string, int>(StringComparer.Ordinal);
            var spec = new TemplateSpec { Name = string.Empty, ContextDirectory = baseDirectory, SourcePath = _source, Lines = lines };
            try
            {
                if (!_reader.Read() || _reader.TokenType != JsonTokenType.StartObject)
                {
                    Errors.Add(new("(spec)", 1, "the spec must be a JSON object ({ \"name\": ..., \"from\": ... })."));
                    return spec;
                }
                while (Next() == JsonTokenType.PropertyName)
                {
                    string field = _reader.GetString()!;
                    int line = Line;
                    if (lines.ContainsKey(field))
                    {
                        Errors.Add(new(field, line, "appears twice."));
                    }
                    lines[field] = line;
                    Next();
                    if (s_fields.TryGetValue(field, out FieldReader? read))
                    {
                        spec = read(ref this, spec, field, baseDirectory);
                    }
                    else
                    {
                        Errors.Add(new(field, line, $"unknown field{Suggest(field, [.. s_fields.Keys])}; the fields are {string.Join(", ", s_fields.Keys)}."));
                        _reader.Skip();
                    }
                }
                if (_reader.Read())
                {
                    Errors.Add(new("(spec)", Line, "unexpected content after the spec's closing brace."));
                }
            }
            catch (JsonException e)
            {
                Errors.Add(new("(syntax)", (int)(e.LineNumber ?? 0) + 1, TrimJsonMessage(e.Message)));
            }
            return spec;
        }

        private List<TemplateStep> Steps()
        {
            var steps = new List<TemplateStep>();
            if (!Expect(JsonTokenType.StartArray, "steps", Line, "must be an array of steps such as [{ \"run\": \"apk add curl\" }]."))
            {
                return steps;
            }
            while (Next() != JsonTokenType.EndArray)
            {
                int index = steps.Count;
                string where = $"steps[{index}]";
                int line = Line;
                if (!Expect(JsonTokenType.StartObject, where, line, "must be an object with one key: run, copy, env, workdir or user."))
                {
                    steps.Add(new TemplateStep(StepKind.Run, [string.Empty]) { Line = line, Malformed = true });
                    continue;
                }
                TemplateStep? step = null;
                while (Next() == JsonTokenType.PropertyName)
                {
                    string kind = _reader.GetString()!;
                    int kindLine = Line;
                    Next();
                    if (step is not null)
                    {
                        Errors.Add(new($"{where}.{kind}", kindLine, "a step has exactly one key; put each instruction in its own step."));
                        _reader.Skip();
                        continue;
                    }
                    step = kind switch
                    {
                        "run" => One(StepKind.Run, $"{where}.run", kindLine),
                        "workdir" => One(StepKind.Workdir, $"{where}.workdir", kindLine),
                        "user" => One(StepKind.User, $"{where}.user", kindLine),
                        "copy" => CopyStep($"{where}.copy", kindLine),
                        "env" => EnvStep($"{where}.env", kindLine),
                        _ => Unknown(where, kind, kindLine),
                    };
                }
                if (step is null)
                {
                    Errors.Add(new(where, line, "is empty; give one of run, copy, env, workdir, user."));
                    step = new TemplateStep(StepKind.Run, [string.Empty]) { Line = line, Malformed = true };
                }
                steps.Add(step);
            }
            return steps;
        }

        private TemplateStep Unknown(string where, string kind, int line)
        {
            Errors.Add(new($"{where}.{kind}", line, $"unknown step kind{Suggest(kind, s_stepKinds)}; the kinds are run, copy, env, workdir, user."));
            _reader.Skip();
            return new TemplateStep(StepKind.Run, [string.Empty]) { Line = line, Malformed = true };
        }

        private TemplateStep One(StepKind kind, string field, int line) => new(kind, [String(field) ?? string.Empty]) { Line = line };

        private TemplateStep CopyStep(string field, int line)
        {
            string? src = null;
            string? dest = null;
            if (Expect(JsonTokenType.StartObject, field, line, "must be an object: { \"src\": \"path in the context\", \"dest\": \"/absolute/path\" }."))
            {
                while (Next() == JsonTokenType.PropertyName)
                {
                    string key = _reader.GetString()!;
                    int keyLine = Line;
                    Next();
                    switch (key)
                    {
                        case "src":
                            src = String($"{field}.src");
                            break;
                        case "dest":
                            dest = String($"{field}.dest");
                            break;
                        default:
                            Errors.Add(new($"{field}.{key}", keyLine, $"unknown key{Suggest(key, ["src", "dest"])}; copy takes src and dest."));
                            _reader.Skip();
                            break;
                    }
                }
                if (src is null)
                {
                    Errors.Add(new($"{field}.src", line, "is missing."));
                }
                if (dest is null)
                {
                    Errors.Add(new($"{field}.dest", line, "is missing."));
                }
            }
            return new TemplateStep(StepKind.Copy, [src ?? string.Empty, dest ?? string.Empty]) { Line = line };
        }

        private TemplateStep EnvStep(string field, int line)
        {
            var args = new List<string>();
            if (Expect(JsonTokenType.StartObject, field, line, "must be an object of names to values: { \"PORT\": \"8080\" }."))
            {
                while (Next() == JsonTokenType.PropertyName)
                {
                    string key = _reader.GetString()!;
                    Next();
                    args.Add(key);
                    args.Add(String($"{field}.{key}") ?? string.Empty);
                }
                if (args.Count == 0)
                {
                    Errors.Add(new(field, line, "is empty; give at least one variable."));
                }
            }
            return new TemplateStep(StepKind.Env, args) { Line = line };
        }

        /// <summary><c>{"outbound": "on|restrict|off", "allow": [RULE...], "deny": [RULE...]}</c>.</summary>
        private Vmm.NetworkConfig? Network(string field)
        {
            if (!Expect(JsonTokenType.StartObject, field, Line, $"must be an object such as {{ \"outbound\": \"on\", \"deny\": [\"10.0.0.0/8\"] }}, not {Describe(_reader.TokenType)}."))
            {
                return null;
            }
            var network = Vmm.NetworkConfig.Default;
            while (Next() != JsonTokenType.EndObject)
            {
                string key = _reader.GetString()!;
                int line = Line;
                Next();
                string where = $"{field}.{key}";
                switch (key)
                {
                    case "outbound":
                        string? outbound = String(where);
                        try
                        {
                            network = outbound is null ? network : network with { Outbound = Vmm.NetworkConfig.ParseOutbound(outbound) };
                        }
                        catch (VesselException e)
                        {
                            Errors.Add(new(where, line, e.Message + "."));
                        }
                        break;
                    case "allow":
                        network = network with { Allow = Rules(where) };
                        break;
                    case "deny":
                        network = network with { Deny = Rules(where) };
                        break;
                    default:
                        Errors.Add(new(where, line, $"unknown key{Suggest(key, ["outbound", "allow", "deny"])}; network takes outbound, allow and deny."));
                        _reader.Skip();
                        break;
                }
            }
            return network;
        }

        private List<Vmm.NetworkRule> Rules(string field)
        {
            var rules = new List<Vmm.NetworkRule>();
            if (!Expect(JsonTokenType.StartArray, field, Line, $"must be an array of rules such as [\"10.0.0.0/8\", \"127.0.0.1:5432\"], not {Describe(_reader.TokenType)}."))
            {
                return rules;
            }
            while (Next() != JsonTokenType.EndArray)
            {
                string? text = String(field);
                try
                {
                    if (text is not null)
                    {
                        rules.Add(Vmm.NetworkRule.Parse(text));
                    }
                }
                catch (VesselException e)
                {
                    Errors.Add(new(field, Line, e.Message + "."));
                }
            }
            return rules;
        }

        private string? String(string field)
            => Expect(JsonTokenType.String, field, Line, $"must be a string, not {Describe(_reader.TokenType)}.") ? _reader.GetString() : null;

        /// <summary>
        /// Whether the value starts with <paramref name="token"/>; if not, the error
        /// "<paramref name="field"/> <paramref name="mustBe"/>" is recorded at <paramref name="line"/> and the value skipped.
        /// </summary>
        private bool Expect(JsonTokenType token, string field, int line, string mustBe)
        {
            if (_reader.TokenType == token)
            {
                return true;
            }
            Errors.Add(new(field, line, mustBe));
            _reader.Skip();
            return false;
        }

        private int? Integer(string field)
        {
            if (_reader.TokenType == JsonTokenType.Number && _reader.TryGetInt32(out int value))
            {
                return value;
            }
            Errors.Add(new(field, Line, _reader.TokenType == JsonTokenType.Number
                ? "must be a whole number in range."
                : $"must be a number, not {Describe(_reader.TokenType)}."));
            _reader.Skip();
            return null;
        }

        private long? Size(string field)
        {
            if (_reader.TokenType == JsonTokenType.Number && _reader.TryGetInt64(out long bytes))
            {
                return bytes;
            }
            if (_reader.TokenType == JsonTokenType.String)
            {
                string text = _reader.GetString()!;
                if (ByteSize.TryParse(text, out long parsed))
                {
                    return parsed;
                }
                Errors.Add(new(field, Line, $"'{text}' is not a size; use e.g. \"2G\", \"512M\" or a byte count."));
                return null;
            }
            Errors.Add(new(field, Line, $"must be a size such as \"2G\", not {Describe(_reader.TokenType)}."));
            _reader.Skip();
            return null;
        }

        private JsonTokenType Next()
        {
            if (!_reader.Read())
            {
                throw new JsonException("the spec ends early (an object or array is not closed).", null, _lineStarts.Count - 1, 0);
            }
            return _reader.TokenType;
        }

        private readonly int LineOf(long offset)
        {
            int index = _lineStarts.BinarySearch((int)offset);
            return (index >= 0 ? index : ~index - 1) + 1;
        }

        private static string Describe(JsonTokenType type) => type switch
        {
            JsonTokenType.StartObject => "an object",
            JsonTokenType.StartArray => "an array",
            JsonTokenType.String => "a string",
            JsonTokenType.Number => "a number",
            JsonTokenType.True or JsonTokenType.False => "a boolean",
            JsonTokenType.Null => "null",
            _ => type.ToString(),
        };

        private static string TrimJsonMessage(string message)
        {
            int at = message.IndexOf(" Path:", StringComparison.Ordinal);
            return at > 0 ? message[..at] : message;
        }
    }

    private static string Suggest(string given, string[] known)
    {
        string? best = known.MinBy(k => Distance(given.ToLowerInvariant(), k.ToLowerInvariant()));
        return best is not null && Distance(given.ToLowerInvariant(), best.ToLowerInvariant()) <= 2 ? $" (did you mean '{best}'?)" : string.Empty;
    }

    private static int Distance(string a, string b)
    {
        int[] previous = [.. Enumerable.Range(0, b.Length + 1)];
        for (int i = 1; i <= a.Length; i++)
        {
            int[] current = new int[b.Length + 1];
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }
            previous = current;
        }
        return previous[b.Length];
    }
}
