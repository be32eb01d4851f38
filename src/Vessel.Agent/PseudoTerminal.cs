using Microsoft.Win32.SafeHandles;
using Vessel.Agent.Protocol;

namespace Vessel.Agent;

/// <summary>
/// The master side of a pseudo-terminal for one process (ExecTerminal). It is opened through
/// the <c>ptmx</c> beside the devpts mounted in the rootfs (init mounts one on
/// <c>ROOT/dev/pts</c>), so the process sees its terminal as <c>/dev/pts/N</c> inside its root;
/// a root without one (the agent run on a host by tests) uses the agent's own <c>/dev/ptmx</c>.
/// The agent holds the master only (close-on-exec); the process opens the slave itself
/// (<see cref="TerminalExec"/>). Reads and writes use two descriptors of the master so the
/// output pump and stdin never share one stream.
/// </summary>
internal sealed class PseudoTerminal : IDisposable
{
    /// <summary>Opens a pseudo-terminal of <paramref name="size"/> for a process that runs in <paramref name="root"/>.</summary>
    public unsafe PseudoTerminal(string root, TerminalSize size)
    {
        string dev = Path.Exists(Path.Combine(root, "dev", "pts", "ptmx")) ? Path.Combine(root, "dev") : "/dev";
        int fd = LibC.Open(Path.Combine(dev, "ptmx"), LibC.ORdwr | LibC.ONoctty | LibC.OCloexec, 0);
        Native.Check(fd, $"open {dev}/ptmx (a terminal needs devpts on {dev}/pts)");
        var master = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            int unlock = 0;
            Native.Check(Native.Ioctl(fd, Native.TiocSetPtyLock, &unlock), "unlock the pty (TIOCSPTLCK)");
            uint number;
            Native.Check(Native.Ioctl(fd, Native.TiocGetPtyNumber, &number), "pty number (TIOCGPTN)");
            Resize(fd, size);
            int writer = Native.Fcntl(fd, Native.FcntlDupCloseOnExec, 3);
            Native.Check(writer, "dup the pty master");
            Input = new FileStream(new SafeFileHandle(writer, ownsHandle: true), FileAccess.Write, 1);
            Output = new FileStream(master, FileAccess.Read, 1);
            SlavePath = Path.Combine(dev, "pts", number.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        catch
        {
            master.Dispose();
            throw;
        }
    }

    /// <summary>The slave's path in the agent's view (the process opens it before it chroots).</summary>
    public string SlavePath { get; }

    /// <summary>What the process writes to its terminal.</summary>
    public FileStream Output { get; }

    /// <summary>What the process reads from its terminal (typed keys, as a terminal would send them).</summary>
    public FileStream Input { get; }

    /// <summary>TIOCSWINSZ on the master: the kernel signals SIGWINCH to the terminal's foreground process group.</summary>
    public void Resize(TerminalSize size)
    {
        SafeFileHandle master = Output.SafeFileHandle;
        bool added = false;
        try
        {
            master.DangerousAddRef(ref added);
            Resize((int)master.DangerousGetHandle(), size);
        }
        finally
        {
            if (added)
            {
                master.DangerousRelease();
            }
        }
    }

    private static unsafe void Resize(int fd, TerminalSize size)
    {
        ushort* winsize = stackalloc ushort[4];
        winsize[0] = size.Rows;
        winsize[1] = size.Columns;
        winsize[2] = 0;
        winsize[3] = 0;
        Native.Check(Native.Ioctl(fd, Native.TiocSetWindowSize, winsize), "resize the pty (TIOCSWINSZ)");
    }

    public void Dispose()
    {
        Input.Dispose();
        Output.Dispose();
    }
}
