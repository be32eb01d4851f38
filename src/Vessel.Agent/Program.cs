namespace Vessel.Agent;

internal static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("vessel-agent: not implemented yet");
        return args.Length == 0 ? 1 : 1;
    }
}
