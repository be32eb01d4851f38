using System.Security.Cryptography;

namespace Vessel.Oci;

/// <summary>
/// A content digest, <c>sha256:</c> followed by 64 lowercase hex digits (image-spec
/// descriptor.md, "Digests"). Only sha256 is accepted: it is what every registry and tool
/// writes, and a validated digest is safe to use as a file name (<see cref="Hex"/>).
/// </summary>
public readonly record struct OciDigest
{
    public const string Sha256Prefix = "sha256:";
    private const int HexLength = 64; // 32 bytes of SHA-256

    private OciDigest(string hex)
    {
        Hex = hex;
    }

    /// <summary>The 64 lowercase hex digits: safe as a path component once parsed.</summary>
    public string Hex { get; }

    public override string ToString() => Sha256Prefix + Hex;

    /// <summary>Parses a digest, or throws <see cref="InvalidDataException"/> naming <paramref name="what"/>.</summary>
    public static OciDigest Parse(string? value, string what)
    {
        if (TryParse(value, out OciDigest digest))
        {
            return digest;
        }
        if (value is not null && value.Contains(':', StringComparison.Ordinal) && !value.StartsWith(Sha256Prefix, StringComparison.Ordinal))
        {
            throw new InvalidDataException(
                $"{what}: digest '{Printable(value)}' uses an unsupported algorithm; Vessel reads sha256 digests only.");
        }
        throw new InvalidDataException(
            $"{what}: '{Printable(value)}' is not a digest (expected sha256: followed by 64 lowercase hex digits).");
    }

    public static bool TryParse(string? value, out OciDigest digest)
    {
        digest = default;
        if (value is null || value.Length != Sha256Prefix.Length + HexLength || !value.StartsWith(Sha256Prefix, StringComparison.Ordinal))
        {
            return false;
        }
        string hex = value[Sha256Prefix.Length..];
        foreach (char c in hex)
        {
            if (c is not ((>= '0' and <= '9') or (>= 'a' and <= 'f')))
            {
                return false;
            }
        }
        digest = new OciDigest(hex);
        return true;
    }

    public static OciDigest FromHash(ReadOnlySpan<byte> sha256)
    {
        if (sha256.Length != SHA256.HashSizeInBytes)
        {
            throw new ArgumentException("A SHA-256 hash is 32 bytes.", nameof(sha256));
        }
        return new OciDigest(Convert.ToHexStringLower(sha256));
    }

    public static OciDigest Compute(ReadOnlySpan<byte> content) => FromHash(SHA256.HashData(content));

    /// <summary>Quotes untrusted text in a message: bounded length, control characters escaped.</summary>
    internal static string Printable(string? value)
    {
        if (value is null)
        {
            return "(missing)";
        }
        const int MaxShown = 100; // enough to recognize a digest, short enough for one line
        var sb = new System.Text.StringBuilder();
        foreach (char c in value.Length > MaxShown ? value[..MaxShown] : value)
        {
            sb.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c);
        }
        if (value.Length > MaxShown)
        {
            sb.Append("...");
        }
        return sb.ToString();
    }
}
