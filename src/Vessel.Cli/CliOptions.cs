using System.CommandLine;
using System.Globalization;

namespace Vessel.Cli;

/// <summary>Options whose values are checked at parse time, with errors that name the option and the form it expects.</summary>
internal static class CliOptions
{
    /// <summary>A duration in seconds: a positive, finite number (e.g. 30 or 2.5).</summary>
    public static Option<double?> Seconds(string name, string description) => new(name)
    {
        Description = description,
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : string.Empty;
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) && double.IsFinite(seconds) && seconds > 0
                && seconds <= TimeSpan.MaxValue.TotalSeconds / 2)
            {
                return seconds;
            }
            result.AddError($"{name} expects a positive number of seconds, e.g. 30 or 2.5 (got '{text}')");
            return null;
        },
    };
}
