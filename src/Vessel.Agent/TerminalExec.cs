namespace Vessel.Agent;

/// <summary>
/// A process on a pseudo-terminal (<c>vessel-agent --terminal-exec SLAVE ROOT CWD UID GID GROUPS -- COMMAND...</c>):
/// a step of its own because .NET's Process.Start cannot make a child a session leader with a
/// controlling terminal. It starts a new session, opens the terminal's slave (which makes it
/// the session's controlling terminal, TIOCSCTTY to be sure), puts it on fds 0, 1 and 2, then
/// chroots, changes to the working directory and user, and execs the command (same pid, so the
/// agent's signals and wait apply to it). A failure is written to the terminal (or to stderr
/// before it is attached) and exits 127.
/// </summary>
internal static class TerminalExec
{
    public const string Flag = "--terminal-exec";

    public static IReadOnlyList<string> Arguments(string slave, string root, string cwd, UserIds ids, IReadOnlyList<string> command)
        => ContainerInit.StepArguments(Flag, slave, root, cwd, ids, command);

    public static int Run(string[] args)
    {
        if (args.Length < 9 || args[7] != "--")
        {
            Console.Error.WriteLine("vessel-agent: usage: --terminal-exec SLAVE ROOT CWD UID GID GROUPS -- COMMAND...");
            return 2;
        }
        try
        {
            AttachTerminal(args[1]);
            ContainerInit.ChrootAndExec(args[2], args[3], args[4], args[5], args[6], args[8..]);
            return 127; // not reached: the exec throws when execve returns
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"vessel-agent: {e.Message}");
            return 127;
        }
    }

    private static unsafe void AttachTerminal(string slave)
    {
        Native.Check(Native.Setsid(), "setsid");
        // Opened without O_NOCTTY by a session leader with no terminal: it becomes the controlling one.
        int fd = LibC.Open(slave, LibC.ORdwr, 0);
        Native.Check(fd, "open the terminal " + slave);
        Native.Check(Native.Ioctl(fd, Native.TiocSetControllingTty, null), "make " + slave + " the controlling terminal (TIOCSCTTY)");
        for (int target = 0; target <= 2; target++)
        {
            Native.Check(Native.Dup2(fd, target), "dup2 the terminal");
        }
        if (fd > 2)
        {
            LibC.Close(fd);
        }
    }
}
