namespace Vessel.Oci;

/// <summary>What a layer entry's base name says about lower layers (image-spec layer.md, "Whiteouts").</summary>
public enum WhiteoutKind
{
    /// <summary>An ordinary entry.</summary>
    None,

    /// <summary>".wh.NAME": NAME and everything below it in lower layers is deleted.</summary>
    Remove,

    /// <summary>".wh..wh..opq": the directory's children from lower layers are hidden.</summary>
    Opaque,

    /// <summary>Another ".wh..wh." name: reserved by the spec, ignored.</summary>
    Reserved,
}

/// <summary>The whiteout rules, shared by the rootfs builder and containerd extraction.</summary>
public static class Whiteout
{
    public const string Prefix = ".wh.";
    public const string OpaqueMarker = ".wh..wh..opq";

    /// <summary>Classifies a base name; for <see cref="WhiteoutKind.Remove"/>, <paramref name="target"/> is the deleted name.</summary>
    /// <exception cref="InvalidDataException">A whiteout that names no file (".wh.", ".wh..", ".wh...").</exception>
    public static WhiteoutKind Classify(string baseName, string context, out string target)
    {
        target = string.Empty;
        if (!baseName.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return WhiteoutKind.None;
        }
        if (baseName == OpaqueMarker)
        {
            return WhiteoutKind.Opaque;
        }
        if (baseName.StartsWith(Prefix + Prefix, StringComparison.Ordinal))
        {
            return WhiteoutKind.Reserved;
        }
        target = baseName[Prefix.Length..];
        if (target.Length == 0 || target is "." or "..")
        {
            throw new InvalidDataException($"{context}: whiteout '{baseName}' names no file");
        }
        return WhiteoutKind.Remove;
    }
}
