using System.Buffers.Binary;
using System.Text;

namespace Vessel.Nbd;

/// <summary>Option negotiation (proto.md, "Fixed newstyle negotiation"), synchronous on the connection's thread.</summary>
internal sealed partial class NbdConnection
{
    private bool _structuredReplies;
    private bool _noZeroes;
    private string? _metaContextExport; // the export SET_META_CONTEXT selected base:allocation for

    /// <summary>What GO or EXPORT_NAME selected.</summary>
    private sealed record Session(NbdExport Export, bool StructuredReplies, bool BlockStatus);

    private Session? Negotiate(CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_server.Options.HandshakeTimeout);
        CancellationToken hct = deadline.Token;

        byte[] greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdProtocol.NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdProtocol.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), (ushort)(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes));
        Send(greeting, hct);

        byte[] four = new byte[4];
        ReadExact(four, hct);
        var clientFlags = (NbdClientFlags)BinaryPrimitives.ReadUInt32BigEndian(four);
        if ((clientFlags & ~(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes)) != 0)
        {
            throw new NbdProtocolException($"Unknown client flags 0x{(uint)clientFlags:x}.");
        }
        _noZeroes = clientFlags.HasFlag(NbdClientFlags.NoZeroes);

        byte[] header = new byte[NbdOptionHeader.Size];
        while (true)
        {
            ReadExact(header, hct);
            NbdOptionHeader option = NbdOptionHeader.Read(header);
            if (option.Length > NbdProtocol.MaxOptionLength)
            {
                throw new NbdProtocolException($"Option {option.Option} carries {option.Length} bytes; options larger than {NbdProtocol.MaxOptionLength} are refused.");
            }
            byte[] data = new byte[option.Length];
            ReadExact(data, hct);
            NbdLog.Option(_logger, _peer, option.Option);
            switch (option.Option)
            {
                case NbdOption.ExportName:
                    {
                        string name = Encoding.UTF8.GetString(data);
                        if (!_server.TryGetExport(name, out NbdExport export))
                        {
                            // This option has no error reply: the spec says to close the connection.
                            throw new NbdProtocolException($"Client asked for unknown export '{name}'.");
                        }
                        byte[] reply = new byte[_noZeroes ? 10 : 134];
                        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Size);
                        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)TransmissionFlags(export));
                        Send(reply, hct);
                        return new Session(export, _structuredReplies, BlockStatus: false);
                    }
                case NbdOption.Abort:
                    SendOptionReply(option.Option, NbdOptionReply.Ack, default, hct);
                    return null;
                case NbdOption.List:
                    if (data.Length != 0)
                    {
                        SendOptionError(option.Option, NbdOptionReply.ErrInvalid, "NBD_OPT_LIST takes no data", hct);
                        break;
                    }
                    foreach (NbdExport e in _server.Exports)
                    {
                        byte[] name = Encoding.UTF8.GetBytes(e.Name);
                        byte[] payload = new byte[4 + name.Length];
                        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)name.Length);
                        name.CopyTo(payload, 4);
                        SendOptionReply(option.Option, NbdOptionReply.Server, payload, hct);
                    }
                    SendOptionReply(option.Option, NbdOptionReply.Ack, default, hct);
                    break;
                case NbdOption.StructuredReply:
                    if (data.Length != 0)
                    {
                        SendOptionError(option.Option, NbdOptionReply.ErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data", hct);
                        break;
                    }
                    _structuredReplies = true;
                    SendOptionReply(option.Option, NbdOptionReply.Ack, default, hct);
                    break;
                case NbdOption.Info:
                case NbdOption.Go:
                    {
                        Session? session = InfoOrGo(option.Option, data, hct);
                        if (session is not null)
                        {
                            return session;
                        }
                        break;
                    }
                case NbdOption.ListMetaContext:
                case NbdOption.SetMetaContext:
                    MetaContext(option.Option, data, hct);
                    break;
                default:
                    SendOptionError(option.Option, NbdOptionReply.ErrUnsupported, $"option {(uint)option.Option} is not supported", hct);
                    break;
            }
        }
    }

    private Session? InfoOrGo(NbdOption option, byte[] data, CancellationToken ct)
    {
        // u32 name length, name, u16 request count, u16 requests.
        if (data.Length < 6)
        {
            SendOptionError(option, NbdOptionReply.ErrInvalid, "option data too short", ct);
            return null;
        }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 6)
        {
            SendOptionError(option, NbdOptionReply.ErrInvalid, "export name length past the option data", ct);
            return null;
        }
        string name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
        int at = 4 + (int)nameLength;
        int count = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at));
        if (data.Length != at + 2 + (2 * count))
        {
            SendOptionError(option, NbdOptionReply.ErrInvalid, "information request count does not match the option length", ct);
            return null;
        }
        var requests = new HashSet<NbdInfo>();
        for (int i = 0; i < count; i++)
        {
            requests.Add((NbdInfo)BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at + 2 + (2 * i))));
        }
        if (!_server.TryGetExport(name, out NbdExport export))
        {
            SendOptionError(option, NbdOptionReply.ErrUnknown, $"no export named '{name}'", ct);
            return null;
        }

        byte[] info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, (ushort)NbdInfo.Export);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Size);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), (ushort)TransmissionFlags(export));
        SendOptionReply(option, NbdOptionReply.Info, info, ct);
        if (requests.Contains(NbdInfo.Name))
        {
            SendInfoString(option, NbdInfo.Name, export.Name, ct);
        }
        if (requests.Contains(NbdInfo.Description) && export.Description.Length > 0)
        {
            SendInfoString(option, NbdInfo.Description, export.Description, ct);
        }
        if (requests.Contains(NbdInfo.BlockSize))
        {
            byte[] sizes = new byte[14];
            BinaryPrimitives.WriteUInt16BigEndian(sizes, (ushort)NbdInfo.BlockSize);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), 1); // any alignment works: partial blocks are merged
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), (uint)export.PreferredBlockSize);
            BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), NbdProtocol.MaxPayload);
            SendOptionReply(option, NbdOptionReply.Info, sizes, ct);
        }
        SendOptionReply(option, NbdOptionReply.Ack, default, ct);
        if (option == NbdOption.Info)
        {
            return null;
        }
        bool blockStatus = _structuredReplies && _metaContextExport == name;
        return new Session(export, _structuredReplies, blockStatus);
    }

    private void MetaContext(NbdOption option, byte[] data, CancellationToken ct)
    {
        // u32 export name length, name, u32 query count, then u32 length + query per query.
        if (option == NbdOption.SetMetaContext && !_structuredReplies)
        {
            SendOptionError(option, NbdOptionReply.ErrInvalid, "negotiate structured replies before NBD_OPT_SET_META_CONTEXT", ct);
            return;
        }
        var queries = new List<string>();
        string name;
        try
        {
            var span = new ReadOnlySpan<byte>(data);
            uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
            name = Encoding.UTF8.GetString(span.Slice(4, checked((int)nameLength)));
            span = span[(4 + (int)nameLength)..];
            uint count = BinaryPrimitives.ReadUInt32BigEndian(span);
            span = span[4..];
            for (uint i = 0; i < count; i++)
            {
                uint length = BinaryPrimitives.ReadUInt32BigEndian(span);
                queries.Add(Encoding.UTF8.GetString(span.Slice(4, checked((int)length))));
                span = span[(4 + (int)length)..];
            }
            if (!span.IsEmpty)
            {
                throw new ArgumentOutOfRangeException(nameof(data));
            }
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or OverflowException)
        {
            SendOptionError(option, NbdOptionReply.ErrInvalid, "malformed meta context request", ct);
            return;
        }
        if (!_server.TryGetExport(name, out _))
        {
            SendOptionError(option, NbdOptionReply.ErrUnknown, $"no export named '{name}'", ct);
            return;
        }
        bool selected = option == NbdOption.ListMetaContext
            ? queries.Count == 0 || queries.Any(q => q is "base:" or NbdProtocol.BaseAllocation)
            : queries.Contains(NbdProtocol.BaseAllocation);
        if (option == NbdOption.SetMetaContext)
        {
            _metaContextExport = selected ? name : null;
        }
        if (selected)
        {
            byte[] context = Encoding.UTF8.GetBytes(NbdProtocol.BaseAllocation);
            byte[] payload = new byte[4 + context.Length];
            BinaryPrimitives.WriteUInt32BigEndian(payload, option == NbdOption.SetMetaContext ? NbdProtocol.BaseAllocationContextId : 0);
            context.CopyTo(payload, 4);
            SendOptionReply(option, NbdOptionReply.MetaContext, payload, ct);
        }
        SendOptionReply(option, NbdOptionReply.Ack, default, ct);
    }

    private NbdTransmissionFlags TransmissionFlags(NbdExport export)
    {
        // Every connection shares one device, so a flush on one covers writes from all: multi-conn is safe.
        NbdTransmissionFlags flags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua
            | NbdTransmissionFlags.CanMultiConn;
        if (_structuredReplies)
        {
            flags |= NbdTransmissionFlags.SendDf;
        }
        flags |= export.IsReadOnly
            ? NbdTransmissionFlags.ReadOnly
            : NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes;
        return flags;
    }

    private void SendInfoString(NbdOption option, NbdInfo type, string value, CancellationToken ct)
    {
        byte[] text = Encoding.UTF8.GetBytes(value);
        byte[] payload = new byte[2 + text.Length];
        BinaryPrimitives.WriteUInt16BigEndian(payload, (ushort)type);
        text.CopyTo(payload, 2);
        SendOptionReply(option, NbdOptionReply.Info, payload, ct);
    }

    private void SendOptionError(NbdOption option, NbdOptionReply error, string message, CancellationToken ct)
    {
        NbdLog.OptionRefused(_logger, _peer, option, error, message);
        SendOptionReply(option, error, Encoding.UTF8.GetBytes(message), ct);
    }

    private void SendOptionReply(NbdOption option, NbdOptionReply reply, ReadOnlySpan<byte> payload, CancellationToken ct)
    {
        byte[] message = new byte[NbdOptionReplyHeader.Size + payload.Length];
        new NbdOptionReplyHeader(option, reply, (uint)payload.Length).Write(message);
        payload.CopyTo(message.AsSpan(NbdOptionReplyHeader.Size));
        Send(message, ct);
    }
}
