using System.Text;

namespace Vessel.Client;

/// <summary>A chunk of a command's output, as the daemon streamed it.</summary>
/// <param name="Stream">Stdout or stderr.</param>
/// <param name="Data">The bytes (a chunk boundary may split a UTF-8 character or a line).</param>
public readonly record struct CommandOutput(CommandStream Stream, ReadOnlyMemory<byte> Data)
{
    /// <summary>The bytes decoded as UTF-8 (a split character decodes as U+FFFD; decode whole streams when that matters).</summary>
    public string Text => Encoding.UTF8.GetString(Data.Span);
}
