namespace Vessel.Agent.Protocol;

/// <summary>
/// Names of a pod's containers: DNS labels (RFC 1123: <c>[a-z0-9]([-a-z0-9]*[a-z0-9])?</c>, at most
/// 63 characters), as Kubernetes requires of container names. Everything Vessel derives from a name
/// (mount sources, guest directories) appends <see cref="DerivedSeparator"/>, which holds an
/// underscore that no valid name has, so a user's name never collides with a derived id (seed 003:
/// a user container called <c>web-ovl</c> would have collided with <c>web</c>'s overlay).
/// </summary>
public static class ContainerNames
{
    public const int MaxLength = 63;

    /// <summary>At most this many containers in one sandbox.</summary>
    public const int MaxContainers = 16;

    public const string DerivedSeparator = "_ovl";

    /// <summary>An id derived from a container's name, e.g. its overlay's mount source.</summary>
    public static string Derived(string name) => name + DerivedSeparator;

    /// <summary>Why <paramref name="name"/> is not a valid container name, or null when it is.</summary>
    public static string? Problem(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "a container needs a name (a DNS label: lowercase letters, digits and '-')";
        }
        if (name.Length > MaxLength)
        {
            return $"container name '{name[..20]}...' has {name.Length} characters; at most {MaxLength}";
        }
        if (name.Contains(DerivedSeparator, StringComparison.Ordinal))
        {
            return $"container name '{name}' contains '{DerivedSeparator}', the separator of ids Vessel derives from names; a name is a DNS label (lowercase letters, digits and '-')";
        }
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            bool ok = c is (>= 'a' and <= 'z') or (>= '0' and <= '9') || (c == '-' && i > 0 && i < name.Length - 1);
            if (!ok)
            {
                return $"container name '{name}' is not a DNS label: character {i + 1} ('{c}') is not allowed (lowercase letters and digits, '-' only inside)";
            }
        }
        return null;
    }
}
