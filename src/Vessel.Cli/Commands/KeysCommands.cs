using System.CommandLine;
using Vessel.Service;
using Vessel.State;

namespace Vessel.Cli.Commands;

/// <summary><c>vessel keys create|ls|rm</c>: API keys for <c>vessel serve --listen</c> (stored hashed in HOME/state.db).</summary>
internal static class KeysCommands
{
    public static Command Create() => new Command("keys", "API keys for 'vessel serve --listen': only their SHA-256 is stored.")
        .WithSubcommands(New(), List(), Remove());

    private static Task<StateStore> OpenAsync(ParseResult parse, Option<string> home, CancellationToken ct)
        => StateStore.OpenAsync(Vessel.Common.VesselSettings.Current.StateLocation(HomeOption.Get(parse, home)), ct);

    private static Command New()
    {
        var home = HomeOption.Create();
        var name = new Option<string>("--name") { Description = "A name to tell the key apart.", DefaultValueFactory = _ => "default" };
        var command = new Command("create", "Make an API key and print it once (stdout).") { home, name };
        return command.WithAction(async (parse, ct) =>
        {
            (ApiKeyRecord record, string key) = await ApiKeys.CreateAsync(await OpenAsync(parse, home, ct), parse.GetValue(name)!, TimeProvider.System, ct);
            await Console.Error.WriteLineAsync($"created key {record.Id} ('{record.Name}'); it is shown only now:");
            Console.WriteLine(key);
            return 0;
        });
    }

    private static Command List()
    {
        var home = HomeOption.Create();
        var command = new Command("ls", "List API keys (id, name, created, last 4 characters).") { home };
        return command.WithAction(async (parse, ct) =>
        {
            foreach (ApiKeyRecord k in await (await OpenAsync(parse, home, ct)).ListApiKeysAsync(ct))
            {
                Console.WriteLine($"{k.Id}\t{k.Name}\t{k.CreatedAt.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}\t...{k.Suffix}");
            }
            return 0;
        });
    }

    private static Command Remove()
    {
        var home = HomeOption.Create();
        var id = new Argument<string>("id") { Description = "The key's id (vessel keys ls)." };
        var command = new Command("rm", "Remove an API key; it stops working at once.") { id, home };
        return command.WithAction(async (parse, ct) =>
        {
            string k = parse.GetValue(id)!;
            if (!await (await OpenAsync(parse, home, ct)).DeleteApiKeyAsync(k, ct))
            {
                throw new VesselException(VesselErrorReason.NotFound, $"there is no API key '{k}' (see 'vessel keys ls').");
            }
            await Console.Error.WriteLineAsync($"removed key {k}");
            return 0;
        });
    }
}
