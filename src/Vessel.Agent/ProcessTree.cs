using System.Globalization;

namespace Vessel.Agent;

/// <summary>Signals a process and all its descendants, found through /proc.</summary>
internal static class ProcessTree
{
    private const int SigKill = 9;
    private const int SigStop = 19;

    public static void Signal(int pid, int signal)
    {
        if (signal == SigKill)
        {
            // Freeze the tree first: killing a child before its parent lets the parent run on
            // (`sh -c "sleep 600; echo never"` would print "never"), and a stopped parent cannot fork.
            var seen = new HashSet<int> { pid };
            Native.Kill(pid, SigStop);
            for (int pass = 0; pass < 2; pass++)
            {
                foreach (int p in Descendants(pid))
                {
                    if (seen.Add(p))
                    {
                        Native.Kill(p, SigStop);
                    }
                }
            }
            Native.Kill(pid, SigKill);
            foreach (int p in seen)
            {
                Native.Kill(p, SigKill);
            }
            return;
        }
        // Twice: a child forked while we walked the tree is caught on the second pass.
        for (int pass = 0; pass < 2; pass++)
        {
            foreach (int p in Descendants(pid))
            {
                Native.Kill(p, signal);
            }
            Native.Kill(pid, signal);
        }
    }

    private static List<int> Descendants(int root)
    {
        var children = new Dictionary<int, List<int>>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                // "pid (comm) state ppid ...": comm may contain spaces and parens, so parse after the last ')'.
                string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                int ppid = int.Parse(rest[1], CultureInfo.InvariantCulture);
                if (!children.TryGetValue(ppid, out List<int>? list))
                {
                    children[ppid] = list = [];
                }
                list.Add(pid);
            }
            catch (IOException)
            {
                // Exited while we looked.
            }
        }
        var result = new List<int>();
        var queue = new Queue<int>();
        queue.Enqueue(root);
        while (queue.Count > 0)
        {
            int p = queue.Dequeue();
            if (children.TryGetValue(p, out List<int>? kids))
            {
                foreach (int k in kids)
                {
                    result.Add(k);
                    queue.Enqueue(k);
                }
            }
        }
        return result;
    }
}
