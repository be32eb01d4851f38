using System.Globalization;

namespace Vessel.Agent;

/// <summary>The uid, gid and supplementary groups a process runs as.</summary>
internal sealed record UserIds(uint Uid, uint Gid, uint[] Groups, string Home)
{
    public static readonly UserIds Root = new(0, 0, [], "/root");

    /// <summary>
    /// Resolves "name", "uid", "name:group" or "uid:gid" against the rootfs's own /etc/passwd and
    /// /etc/group (read through <see cref="RootFs"/>, so a symlinked passwd cannot point outside).
    /// </summary>
    public static UserIds Resolve(RootFs rootFs, string user)
    {
        if (string.IsNullOrEmpty(user) || user is "root" or "0")
        {
            return Root;
        }
        string userPart = user;
        string? groupPart = null;
        int colon = user.IndexOf(':', StringComparison.Ordinal);
        if (colon >= 0)
        {
            userPart = user[..colon];
            groupPart = user[(colon + 1)..];
        }
        string[] passwd = ReadLines(rootFs, "/etc/passwd");
        string[] groupFile = ReadLines(rootFs, "/etc/group");

        uint uid;
        uint gid;
        string home = "/";
        string? name = null;
        string[]? entry = passwd.Select(l => l.Split(':')).FirstOrDefault(f => f.Length >= 7 && (f[0] == userPart || f[2] == userPart));
        if (entry is not null)
        {
            name = entry[0];
            uid = uint.Parse(entry[2], CultureInfo.InvariantCulture);
            gid = uint.Parse(entry[3], CultureInfo.InvariantCulture);
            home = entry[5];
        }
        else if (uint.TryParse(userPart, NumberStyles.None, CultureInfo.InvariantCulture, out uid))
        {
            gid = uid;
        }
        else
        {
            throw new AgentErrorException(LibC.Einval, $"user '{userPart}' is not in the rootfs's /etc/passwd and is not a number");
        }

        if (groupPart is not null)
        {
            string[]? g = groupFile.Select(l => l.Split(':')).FirstOrDefault(f => f.Length >= 3 && (f[0] == groupPart || f[2] == groupPart));
            if (g is not null)
            {
                gid = uint.Parse(g[2], CultureInfo.InvariantCulture);
            }
            else if (!uint.TryParse(groupPart, NumberStyles.None, CultureInfo.InvariantCulture, out gid))
            {
                throw new AgentErrorException(LibC.Einval, $"group '{groupPart}' is not in the rootfs's /etc/group and is not a number");
            }
        }

        var groups = new List<uint> { gid };
        if (name is not null)
        {
            foreach (string[] f in groupFile.Select(l => l.Split(':')))
            {
                if (f.Length >= 4 && f[3].Split(',').Contains(name) && uint.TryParse(f[2], CultureInfo.InvariantCulture, out uint member) && !groups.Contains(member))
                {
                    groups.Add(member);
                }
            }
        }
        return new UserIds(uid, gid, [.. groups], home);
    }

    private static string[] ReadLines(RootFs rootFs, string path)
    {
        try
        {
            using Microsoft.Win32.SafeHandles.SafeFileHandle handle = rootFs.OpenRead(path);
            using var stream = new FileStream(handle, FileAccess.Read, 0);
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (AgentErrorException)
        {
            return [];
        }
    }
}
