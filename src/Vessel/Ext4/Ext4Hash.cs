using System.Buffers.Binary;
using System.Numerics;

namespace Vessel.Ext4;

/// <summary>
/// The hashes ext4 stores on disk: the htree directory hash (half-MD4, unsigned variant) and
/// the extended attribute entry and block hashes. (Linux fs/ext4/hash.c, fs/ext4/xattr.c;
/// e2fsprogs lib/ext2fs/dirhash.c and ext_attr.c.)
/// </summary>
public static class Ext4Hash
{
    private const uint K2 = 0x5A827999; // 013240474631
    private const uint K3 = 0x6ED9EBA1; // 015666365641

    /// <summary>half_md4 over <paramref name="name"/> with the superblock's seed; returns the major hash with bit 0 clear.</summary>
    public static uint HalfMd4(ReadOnlySpan<byte> name, ReadOnlySpan<uint> seed)
    {
        Span<uint> buf = stackalloc uint[4];
        if (seed.Length == 4 && (seed[0] | seed[1] | seed[2] | seed[3]) != 0)
        {
            seed.CopyTo(buf);
        }
        else
        {
            buf[0] = 0x67452301;
            buf[1] = 0xefcdab89;
            buf[2] = 0x98badcfe;
            buf[3] = 0x10325476;
        }
        Span<uint> input = stackalloc uint[8];
        int len = name.Length;
        int pos = 0;
        do
        {
            StrToHashBufUnsigned(name[pos..], len, input);
            HalfMd4Transform(buf, input);
            len -= 32;
            pos += 32;
        }
        while (len > 0);
        uint hash = buf[1] & ~1u;
        const uint Eof32 = 0x7FFFFFFF;
        if (hash == (Eof32 << 1))
        {
            hash = (Eof32 - 1) << 1;
        }
        return hash;
    }

    private static void StrToHashBufUnsigned(ReadOnlySpan<byte> msg, int len, Span<uint> buf)
    {
        int num = buf.Length;
        uint pad = (uint)len | ((uint)len << 8);
        pad |= pad << 16;
        uint val = pad;
        if (len > num * 4)
        {
            len = num * 4;
        }
        int bi = 0;
        for (int i = 0; i < len; i++)
        {
            val = msg[i] + (val << 8);
            if (i % 4 == 3)
            {
                buf[bi++] = val;
                val = pad;
                num--;
            }
        }
        if (--num >= 0)
        {
            buf[bi++] = val;
        }
        while (--num >= 0)
        {
            buf[bi++] = pad;
        }
    }

    private static uint F(uint x, uint y, uint z) => z ^ (x & (y ^ z));

    private static uint G(uint x, uint y, uint z) => (x & y) + ((x ^ y) & z);

    private static uint H(uint x, uint y, uint z) => x ^ y ^ z;

    private static void HalfMd4Transform(Span<uint> buf, ReadOnlySpan<uint> i)
    {
        uint a = buf[0], b = buf[1], c = buf[2], d = buf[3];

        a = BitOperations.RotateLeft(a + F(b, c, d) + i[0], 3);
        d = BitOperations.RotateLeft(d + F(a, b, c) + i[1], 7);
        c = BitOperations.RotateLeft(c + F(d, a, b) + i[2], 11);
        b = BitOperations.RotateLeft(b + F(c, d, a) + i[3], 19);
        a = BitOperations.RotateLeft(a + F(b, c, d) + i[4], 3);
        d = BitOperations.RotateLeft(d + F(a, b, c) + i[5], 7);
        c = BitOperations.RotateLeft(c + F(d, a, b) + i[6], 11);
        b = BitOperations.RotateLeft(b + F(c, d, a) + i[7], 19);

        a = BitOperations.RotateLeft(a + G(b, c, d) + i[1] + K2, 3);
        d = BitOperations.RotateLeft(d + G(a, b, c) + i[3] + K2, 5);
        c = BitOperations.RotateLeft(c + G(d, a, b) + i[5] + K2, 9);
        b = BitOperations.RotateLeft(b + G(c, d, a) + i[7] + K2, 13);
        a = BitOperations.RotateLeft(a + G(b, c, d) + i[0] + K2, 3);
        d = BitOperations.RotateLeft(d + G(a, b, c) + i[2] + K2, 5);
        c = BitOperations.RotateLeft(c + G(d, a, b) + i[4] + K2, 9);
        b = BitOperations.RotateLeft(b + G(c, d, a) + i[6] + K2, 13);

        a = BitOperations.RotateLeft(a + H(b, c, d) + i[3] + K3, 3);
        d = BitOperations.RotateLeft(d + H(a, b, c) + i[7] + K3, 9);
        c = BitOperations.RotateLeft(c + H(d, a, b) + i[2] + K3, 11);
        b = BitOperations.RotateLeft(b + H(c, d, a) + i[6] + K3, 15);
        a = BitOperations.RotateLeft(a + H(b, c, d) + i[1] + K3, 3);
        d = BitOperations.RotateLeft(d + H(a, b, c) + i[5] + K3, 9);
        c = BitOperations.RotateLeft(c + H(d, a, b) + i[0] + K3, 11);
        b = BitOperations.RotateLeft(b + H(c, d, a) + i[4] + K3, 15);

        buf[0] += a;
        buf[1] += b;
        buf[2] += c;
        buf[3] += d;
    }

    /// <summary>ext2fs_ext_attr_hash_entry: name bytes (signed char) then the value as little-endian words.</summary>
    public static uint XattrEntry(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        uint hash = 0;
        foreach (byte c in name)
        {
            hash = (hash << 5) ^ (hash >> 27) ^ (uint)(sbyte)c;
        }
        int words = (value.Length + 3) / 4;
        Span<byte> word = stackalloc byte[4];
        for (int w = 0; w < words; w++)
        {
            word.Clear();
            int take = Math.Min(4, value.Length - (w * 4));
            value.Slice(w * 4, take).CopyTo(word);
            hash = (hash << 16) ^ (hash >> 16) ^ BinaryPrimitives.ReadUInt32LittleEndian(word);
        }
        return hash;
    }

    /// <summary>ext2fs_ext_attr_block_rehash over the entries' hashes.</summary>
    public static uint XattrBlock(IEnumerable<uint> entryHashes)
    {
        uint hash = 0;
        foreach (uint e in entryHashes)
        {
            if (e == 0)
            {
                return 0;
            }
            hash = (hash << 16) ^ (hash >> 16) ^ e;
        }
        return hash;
    }
}
