namespace Vessel.Client;

/// <summary>Where a template build stands.</summary>
public enum BuildStatus
{
    /// <summary>A status this version of the client does not know.</summary>
    Unknown,

    /// <summary>Still running.</summary>
    Building,

    /// <summary>The template is ready.</summary>
    Succeeded,

    /// <summary>The build failed; <see cref="BuildInfo.Error"/> and the log say why.</summary>
    Failed,
}
