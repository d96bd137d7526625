namespace OpenWeights.Tokenizers;

/// <summary>
/// GPT-2's reversible byte to unicode mapping: printable Latin-1 bytes map to themselves, the other 68 bytes
/// to U+0100.. in byte order. Byte-level BPE vocabularies are written in these characters.
/// </summary>
internal static class ByteLevel
{
    /// <summary>byte -> char (all results are in U+0021..U+0143).</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>char -> byte for chars below <see cref="CharToByte"/>.Length; -1 when the char is not a mapped byte.</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var assigned = new bool[256];
        for (int b = 0x21; b <= 0x7E; b++) { map[b] = (char)b; assigned[b] = true; }
        for (int b = 0xA1; b <= 0xAC; b++) { map[b] = (char)b; assigned[b] = true; }
        for (int b = 0xAE; b <= 0xFF; b++) { map[b] = (char)b; assigned[b] = true; }
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (!assigned[b]) map[b] = (char)(256 + n++);
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var r = new short[0x144];
        Array.Fill(r, (short)-1);
        for (int b = 0; b < 256; b++) r[ByteToChar[b]] = (short)b;
        return r;
    }
}
