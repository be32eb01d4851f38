using System.Diagnostics.CodeAnalysis;

namespace Vessel.Oci;

/// <summary>The argument and order checks every <see cref="IImageSource.OpenLayerAsync"/> makes.</summary>
internal static class ImageSourceGuard
{
    /// <summary>
    /// Layer <paramref name="index"/> of <paramref name="layers"/>, after checking that
    /// <see cref="IImageSource.ResolveAsync"/> ran (<paramref name="resolved"/> is set) and the index is in range.
    /// </summary>
    public static T Layer<T>(string description, [NotNull] ResolvedImage? resolved, [NotNull] IReadOnlyList<T>? layers, int index)
    {
        if (resolved is null || layers is null)
        {
            throw new InvalidOperationException($"{description}: call ResolveAsync before OpenLayerAsync.");
        }
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, layers.Count);
        return layers[index];
    }
}
