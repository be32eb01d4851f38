namespace Vessel.Templates;

/// <summary>One problem in a template spec: the field, its line (0 when the spec came from code) and what is wrong.</summary>
public sealed record TemplateSpecError(string Field, int Line, string Message)
{
    public override string ToString() => Line > 0 ? $"line {Line}: {Field}: {Message}" : $"{Field}: {Message}";
}

/// <summary>A template spec that cannot be used; <see cref="Errors"/> lists every problem found, not just the first.</summary>
public sealed class TemplateSpecException : VesselException
{
    public TemplateSpecException(string source, IReadOnlyList<TemplateSpecError> errors)
        : base(VesselErrorReason.InvalidInput, Describe(source, errors))
    {
        Errors = errors;
    }

    public TemplateSpecException(string message)
        : base(VesselErrorReason.InvalidInput, message)
    {
        Errors = [];
    }

    public IReadOnlyList<TemplateSpecError> Errors { get; }

    private static string Describe(string source, IReadOnlyList<TemplateSpecError> errors) => errors.Count == 1
        ? $"{source}: {errors[0]}"
        : $"{source}: {errors.Count} problems:" + string.Concat(errors.Select(e => "\n  " + e));
}
