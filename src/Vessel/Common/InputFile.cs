namespace Vessel.Common;

/// <summary>A path a user named as a file to read: a directory there is said to be one, not "does not exist".</summary>
public static class InputFile
{
    /// <summary>Returns <paramref name="path"/> when it is a file; <paramref name="what"/> names it in the error otherwise.</summary>
    public static string Require(string path, string what)
    {
        if (File.Exists(path))
        {
            return path;
        }
        if (Directory.Exists(path))
        {
            throw new VesselException(VesselErrorReason.InvalidInput, $"{what} '{path}' is a directory; give a file");
        }
        throw new VesselException(VesselErrorReason.NotFound, $"{what} '{path}' does not exist");
    }
}
