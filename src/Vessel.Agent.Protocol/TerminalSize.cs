namespace Vessel.Agent.Protocol;

/// <summary>A terminal's size in character cells (struct winsize's ws_row and ws_col).</summary>
public readonly record struct TerminalSize(ushort Rows, ushort Columns)
{
    public void Write(PayloadWriter w) => w.U32(Rows).U32(Columns);

    public static TerminalSize Read(ref PayloadReader r)
    {
        uint rows = r.U32();
        uint columns = r.U32();
        if (rows > ushort.MaxValue || columns > ushort.MaxValue)
        {
            throw new AgentProtocolException($"Terminal size {rows}x{columns} is larger than {ushort.MaxValue} cells.");
        }
        return new TerminalSize((ushort)rows, (ushort)columns);
    }

    public byte[] Encode() => PayloadWriter.Build(Write);

    public static TerminalSize Decode(ReadOnlySpan<byte> payload) => PayloadReader.ReadWhole(payload, Read);
}
