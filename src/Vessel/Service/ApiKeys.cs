using System.Security.Cryptography;
using System.Text;
using Vessel.State;

namespace Vessel.Service;

/// <summary>
/// API keys for the daemon's TCP listener: <c>vk_</c> + 32 random bytes in hex. Only the SHA-256
/// of a key is stored, and a presented key is compared by its hash.
/// </summary>
internal static class ApiKeys
{
    public const string Prefix = "vk_";

    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>Makes and stores a key; returns the record and the key (shown once).</summary>
    public static async Task<(ApiKeyRecord Record, string Key)> CreateAsync(StateStore state, string name, TimeProvider time, CancellationToken cancellationToken)
    {
        string key = Prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var record = new ApiKeyRecord("key-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)), name, Hash(key), key[^4..], time.GetUtcNow());
        await state.PutApiKeyAsync(record, cancellationToken);
        return (record, key);
    }

    /// <summary>True when <paramref name="key"/> is a stored key (read from the database each time, so a removed key stops working at once).</summary>
    public static async Task<bool> IsValidAsync(StateStore state, string? key, CancellationToken cancellationToken)
        => key is { Length: > 0 and < 256 } && key.StartsWith(Prefix, StringComparison.Ordinal) && await state.ApiKeyHashExistsAsync(Hash(key), cancellationToken);
}
