namespace Vessel.Oci;

/// <summary>How <see cref="ImageSources.OpenAsync"/> reads an image.</summary>
public sealed record ImageSourceOptions
{
    public static ImageSourceOptions Default { get; } = new();

    /// <summary>Talk plain HTTP to the registry (a local registry without TLS, like <c>skopeo --tls-verify=false</c>).</summary>
    public bool Insecure { get; init; }

    /// <summary>Registry credentials: sent as HTTP Basic to the token endpoint (or to the registry when it asks for Basic).</summary>
    public RegistryCredentials? Credentials { get; init; }

    /// <summary>Also check each uncompressed layer against the config's diff_id (as containerd does on unpack).</summary>
    public bool VerifyDiffIds { get; init; } = true;

    /// <summary>How long a registry may take to answer a request's headers (blob bodies stream without this limit).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>A registry user name and password (or token as password).</summary>
public sealed record RegistryCredentials(string Username, string Password)
{
    public override string ToString() => $"RegistryCredentials {{ Username = {Username}, Password = *** }}";
}
