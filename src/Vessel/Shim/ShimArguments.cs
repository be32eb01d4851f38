namespace Vessel.Shim;

/// <summary>
/// The shim's command line as containerd's runtime v2 writes it (core/runtime/v2/README.md):
/// Go-style flags (<c>-flag value</c>, <c>-flag=value</c>, <c>--flag</c>) before one action:
/// <c>start</c>, <c>delete</c>, or none (the long-lived shim, which Vessel's own start runs as
/// <c>serve</c> with <c>-socket</c>). <c>-v</c> prints the version.
/// </summary>
internal sealed record ShimArguments
{
    public string Namespace { get; init; } = string.Empty;

    public string Address { get; init; } = string.Empty;

    public string PublishBinary { get; init; } = string.Empty;

    public string Id { get; init; } = string.Empty;

    public string? Bundle { get; init; }

    public string? Socket { get; init; }

    public bool Debug { get; init; }

    public bool Version { get; init; }

    public string Action { get; init; } = string.Empty;

    public static ShimArguments Parse(IReadOnlyList<string> args)
    {
        var result = new ShimArguments();
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith('-') || arg == "-")
            {
                if (result.Action.Length > 0)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"unexpected argument '{arg}' after the action '{result.Action}'");
                }
                result = result with { Action = arg };
                continue;
            }
            string name = arg.TrimStart('-');
            string? value = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            switch (name)
            {
                case "v" or "version":
                    result = result with { Version = true };
                    continue;
                case "debug":
                    result = result with { Debug = value is null or "true" or "1" };
                    continue;
            }
            if (value is null)
            {
                if (i + 1 >= args.Count)
                {
                    throw new VesselException(VesselErrorReason.InvalidInput, $"flag -{name} needs a value");
                }
                value = args[++i];
            }
            result = name switch
            {
                "namespace" => result with { Namespace = value },
                "address" => result with { Address = value },
                "publish-binary" => result with { PublishBinary = value },
                "id" => result with { Id = value },
                "bundle" => result with { Bundle = value },
                "socket" => result with { Socket = value },
                _ => throw new VesselException(VesselErrorReason.InvalidInput, $"unknown flag -{name}"),
            };
        }
        return result;
    }

    /// <summary>The flags again, for the long-lived shim that <c>start</c> runs.</summary>
    public IReadOnlyList<string> ToFlags()
    {
        var list = new List<string> { "-namespace", Namespace, "-address", Address, "-publish-binary", PublishBinary, "-id", Id };
        if (Bundle is not null)
        {
            list.AddRange(["-bundle", Bundle]);
        }
        if (Socket is not null)
        {
            list.AddRange(["-socket", Socket]);
        }
        if (Debug)
        {
            list.Add("-debug");
        }
        return list;
    }
}
