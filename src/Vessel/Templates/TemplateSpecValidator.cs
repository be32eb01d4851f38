using System.Text.RegularExpressions;
using Vessel.Common;

namespace Vessel.Templates;

/// <summary>The rules every template spec obeys, whether read from a file or built in code.</summary>
public static partial class TemplateSpecValidator
{
    public const long MinDiskBytes = 64L << 20; // below this ext4 plus the provisioning files leave no room to work
    public const long MaxDiskBytes = 2L << 40;
    public const int MaxCpu = 64;
    public const int MinMemoryMb = Guest.GuestKit.MinimumMemoryMiB; // the guest kit's minimum
    public const int MaxMemoryMb = 256 << 10;
    public const int MaxSteps = 256;
    public const int MaxCommandLength = 64 << 10;

    public static IReadOnlyList<TemplateSpecError> Validate(TemplateSpec spec)
    {
        var errors = new List<TemplateSpecError>();
        int Line(string field) => spec.Lines.GetValueOrDefault(field);
        void Error(string field, string message) => errors.Add(new(field, Line(field), message));

        if (string.IsNullOrEmpty(spec.Name))
        {
            errors.Add(new("name", Line("name") is > 0 and int l ? l : 1, "is required: a short name such as \"web-app\" (lowercase letters, digits, '.', '_', '-')."));
        }
        else if (!NamePattern().IsMatch(spec.Name))
        {
            Error("name", $"'{spec.Name}' is not a valid name: 1-63 characters, lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.");
        }
        switch ((spec.FromImage, spec.FromTemplate))
        {
            case (null, null):
                errors.Add(new("from", Math.Max(1, Line("name")), "is required: an image reference (\"from\": \"alpine:3.20\") or a parent template (\"fromTemplate\": \"base\")."));
                break;
            case (not null, not null):
                Error("fromTemplate", "give either 'from' (an image) or 'fromTemplate' (a parent template), not both.");
                break;
            case ({ Length: 0 }, _):
                Error("from", "is empty; give an image reference such as \"alpine:3.20\".");
                break;
            case (_, { } parent) when !NamePattern().IsMatch(parent):
                Error("fromTemplate", $"'{parent}' is not a template name.");
                break;
            case (_, { } parent) when parent == spec.Name:
                Error("fromTemplate", "a template cannot be built from itself.");
                break;
            default:
                break;
        }
        if (spec.DiskSizeBytes is long disk)
        {
            if (disk < MinDiskBytes || disk > MaxDiskBytes)
            {
                Error("diskSize", $"{ByteSize.Format(disk)} is out of range: between {ByteSize.Format(MinDiskBytes)} and {ByteSize.Format(MaxDiskBytes)}.");
            }
            else if (disk % (1 << 20) != 0)
            {
                Error("diskSize", $"{disk} bytes is not a whole number of MiB; use e.g. \"{disk >> 20}M\".");
            }
            else if ((long)spec.ReservedMb << 20 > disk / 2)
            {
                Error("reservedMb", $"{spec.ReservedMb} MiB is more than half of the {ByteSize.Format(disk)} disk.");
            }
        }
        if (spec.ReservedMb is < 0 or > (1 << 20))
        {
            Error("reservedMb", $"{spec.ReservedMb} is out of range: 0 to {1 << 20} MiB.");
        }
        if (spec.Cpu is < 1 or > MaxCpu)
        {
            Error("cpu", $"{spec.Cpu} is out of range: 1 to {MaxCpu}.");
        }
        if (spec.MemoryMb is < MinMemoryMb or > MaxMemoryMb)
        {
            Error("memoryMb", $"{spec.MemoryMb} is out of range: {MinMemoryMb} to {MaxMemoryMb} MiB.");
        }
        try
        {
            spec.Network?.Validate();
        }
        catch (VesselException e)
        {
            Error("network", e.Message + ".");
        }
        if (spec.Steps.Count > MaxSteps)
        {
            Error("steps", $"{spec.Steps.Count} steps; at most {MaxSteps}.");
        }
        for (int i = 0; i < spec.Steps.Count; i++)
        {
            ValidateStep(spec, spec.Steps[i], $"steps[{i}]", errors);
        }
        if (spec.Start is { } start && (start.Trim().Length == 0 || start.Length > MaxCommandLength || start.Contains('\0', StringComparison.Ordinal)))
        {
            Error("start", "must be a non-empty command (run through /bin/sh -c).");
        }
        if (spec.Ready is { } ready)
        {
            if (ready.Trim().Length == 0 || ready.Length > MaxCommandLength || ready.Contains('\0', StringComparison.Ordinal))
            {
                Error("ready", "must be a non-empty command that exits 0 when the template is ready.");
            }
            else if (spec.Start is null)
            {
                Error("ready", "needs a start command: the ready check waits for what 'start' launched.");
            }
        }
        return errors;
    }

    public static void ThrowIfInvalid(TemplateSpec spec)
    {
        IReadOnlyList<TemplateSpecError> errors = Validate(spec);
        if (errors.Count > 0)
        {
            throw new TemplateSpecException(spec.SourcePath ?? $"template '{spec.Name}'", errors);
        }
    }

    private static void ValidateStep(TemplateSpec spec, TemplateStep step, string where, List<TemplateSpecError> errors)
    {
        if (step.Malformed)
        {
            return;
        }
        string kind = step.Kind.ToString().ToLowerInvariant();
        void Error(string message) => errors.Add(new($"{where}.{kind}", step.Line, message));
        IReadOnlyList<string> a = step.Arguments;
        switch (step.Kind)
        {
            case StepKind.Run:
                if (a.Count != 1 || a[0].Trim().Length == 0)
                {
                    Error("must be a non-empty command.");
                }
                else if (a[0].Length > MaxCommandLength || a[0].Contains('\0', StringComparison.Ordinal))
                {
                    Error($"the command is longer than {MaxCommandLength} characters or holds a NUL.");
                }
                break;
            case StepKind.Copy:
                if (a.Count != 2)
                {
                    Error("takes a source and a destination.");
                    break;
                }
                if (a[0].Length > 0 && (Path.IsPathRooted(a[0]) || a[0].Split('/', '\\').Contains("..")))
                {
                    errors.Add(new($"{where}.copy.src", step.Line, $"'{a[0]}' must be a relative path inside the build context, without '..'."));
                }
                else if (a[0].Length > 0 && spec.ContextDirectory is null)
                {
                    errors.Add(new($"{where}.copy.src", step.Line, "COPY needs a build context directory (Template.Context(dir), or the spec file's directory)."));
                }
                if (a[1].Length > 0 && !IsAbsoluteGuestPath(a[1]))
                {
                    errors.Add(new($"{where}.copy.dest", step.Line, $"'{a[1]}' must be an absolute path in the guest, without '..'."));
                }
                break;
            case StepKind.Env:
                if (a.Count == 0 || a.Count % 2 != 0)
                {
                    Error("takes name/value pairs.");
                    break;
                }
                for (int i = 0; i < a.Count; i += 2)
                {
                    if (!EnvNamePattern().IsMatch(a[i]))
                    {
                        Error($"'{a[i]}' is not a variable name (letters, digits and '_', not starting with a digit).");
                    }
                    if (a[i + 1].Contains('\0', StringComparison.Ordinal))
                    {
                        Error($"the value of {a[i]} holds a NUL.");
                    }
                }
                break;
            case StepKind.Workdir:
                if (a.Count != 1 || !IsAbsoluteGuestPath(a[0]))
                {
                    Error($"'{(a.Count > 0 ? a[0] : string.Empty)}' must be an absolute path in the guest, without '..'.");
                }
                break;
            case StepKind.User:
                if (a.Count != 1 || !UserPattern().IsMatch(a[0]))
                {
                    Error($"'{(a.Count > 0 ? a[0] : string.Empty)}' is not a user: a name or uid, optionally ':group' or ':gid'.");
                }
                break;
        }
    }

    private static bool IsAbsoluteGuestPath(string path)
        => path.StartsWith('/') && !path.Split('/').Contains("..") && !path.Contains('\0', StringComparison.Ordinal) && path.Length <= 4096;

    /// <summary>True for a template name: 1-63 of lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.</summary>
    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,62}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex EnvNamePattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$")]
    private static partial Regex UserPattern();
}
