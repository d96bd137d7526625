using System.Runtime.Intrinsics;
namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q6_K: super-blocks of 256 values, 210 bytes; 16 sub-blocks of 16 values.
/// <code>
/// offset 0   : u8  ql[128]    low 4 bits. Half h (0,1) uses ql[64h ..]: ql[64h + l] low nibble = value 128h + l,
///                             ql[64h + 32 + l] low = value 128h + 32 + l, ql[64h + l] high = value 128h + 64 + l,
///                             ql[64h + 32 + l] high = value 128h + 96 + l   (l = 0..31)
/// offset 128 : u8  qh[64]     high 2 bits: qh[32h + l] bits 0-1, 2-3, 4-5, 6-7 for values 128h + l, +32, +64, +96
/// offset 192 : i8  scales[16] one signed 8-bit scale per 16 values
/// offset 208 : f16 d
/// value = d * sc * (q - 32)   (evaluated as (d*sc)*q)
/// </code>
/// </summary>
public static unsafe class BlockQ6_K
{
    public const int BlockSize = 256, BlockBytes = 210;

    /// <summary>Dequantizes whole blocks: Vector256 when accelerated (same float operations as the reference, so bit-identical).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated) { DequantizeScalar(src, dst); return; }
        DequantizeSimd(src, dst);
    }

    /// <summary>
    /// Vector256 path: per 128 values, the 4 groups of 32 six-bit values are built as in the reference (low/high nibbles of
    /// ql | 2 bits of qh, minus 32) and each 16-value half is scaled by (d·sc): (d·sc)·q, as the reference evaluates it.
    /// </summary>
    public static void DequantizeSimd(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        var m4 = System.Runtime.Intrinsics.Vector256.Create((byte)0x0F);
        var m2 = System.Runtime.Intrinsics.Vector256.Create((byte)0x03);
        var off = System.Runtime.Intrinsics.Vector256.Create((sbyte)32);
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float* y = y0 + i * BlockSize;
                byte* ql = b, qh = b + 128;
                sbyte* sc = (sbyte*)(b + 192);
                float d = HalfConvert.ReadFp16(b + 208);
                for (int n = 0; n < BlockSize; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
                {
                    var A = System.Runtime.Intrinsics.Vector256.Load(ql);
                    var B = System.Runtime.Intrinsics.Vector256.Load(ql + 32);
                    var H = System.Runtime.Intrinsics.Vector256.Load(qh).AsUInt16();
                    var q1 = ((A & m4) | System.Runtime.Intrinsics.Vector256.ShiftLeft((H.AsByte() & m2).AsUInt16(), 4).AsByte()).AsSByte() - off;
                    var q2 = ((B & m4) | System.Runtime.Intrinsics.Vector256.ShiftLeft((System.Runtime.Intrinsics.Vector256.ShiftRightLogical(H, 2).AsByte() & m2).AsUInt16(), 4).AsByte()).AsSByte() - off;
                    var q3 = ((System.Runtime.Intrinsics.Vector256.ShiftRightLogical(A.AsUInt16(), 4).AsByte() & m4) | System.Runtime.Intrinsics.Vector256.ShiftLeft((System.Runtime.Intrinsics.Vector256.ShiftRightLogical(H, 4).AsByte() & m2).AsUInt16(), 4).AsByte()).AsSByte() - off;
                    var q4 = ((System.Runtime.Intrinsics.Vector256.ShiftRightLogical(B.AsUInt16(), 4).AsByte() & m4) | System.Runtime.Intrinsics.Vector256.ShiftLeft((System.Runtime.Intrinsics.Vector256.ShiftRightLogical(H, 6).AsByte() & m2).AsUInt16(), 4).AsByte()).AsSByte() - off;
                    QuantMath.Scale32(q1, d * sc[0], d * sc[1], y);
                    QuantMath.Scale32(q2, d * sc[2], d * sc[3], y + 32);
                    QuantMath.Scale32(q3, d * sc[4], d * sc[5], y + 64);
                    QuantMath.Scale32(q4, d * sc[6], d * sc[7], y + 96);
                }
            }
        }
    }

    /// <summary>Scalar reference (ggml dequantize_row_q6_K).</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float* y = y0 + i * BlockSize;
                byte* ql = b;
                byte* qh = b + 128;
                sbyte* sc = (sbyte*)(b + 192);
                float d = HalfConvert.ReadFp16(b + 208);
                for (int n = 0; n < BlockSize; n += 128)
                {
                    for (int l = 0; l < 32; ++l)
                    {
                        int isc = l / 16;
                        int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        y[l + 0] = d * sc[isc + 0] * q1;
                        y[l + 32] = d * sc[isc + 2] * q2;
                        y[l + 64] = d * sc[isc + 4] * q3;
                        y[l + 96] = d * sc[isc + 6] * q4;
                    }
                    y += 128; ql += 64; qh += 32; sc += 8;
                }
            }
        }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_q6_K_ref): per sub-block make_qx_quants(16, 32, rmse_type 1),
    /// 8-bit scales relative to the scale of largest magnitude (-128/max), then requantize.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        Span<sbyte> L = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        fixed (byte* d0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                ReadOnlySpan<float> x = src.Slice(i * BlockSize, BlockSize);
                byte* b = d0 + i * BlockBytes;
                float maxScale = 0, maxAbsScale = 0;
                for (int ib = 0; ib < 16; ++ib)
                {
                    float scale = QuantMath.MakeQxQuants(16, 32, x.Slice(16 * ib), L.Slice(16 * ib), 1, default);
                    scales[ib] = scale;
                    float absScale = MathF.Abs(scale);
                    if (absScale > maxAbsScale) { maxAbsScale = absScale; maxScale = scale; }
                }
                if (maxAbsScale < QuantMath.GroupMaxEps)
                {
                    new Span<byte>(b, BlockBytes).Clear();
                    continue;
                }
                float iscale = -128f / maxScale;
                HalfConvert.WriteFp16(b + 208, 1 / iscale);
                sbyte* ysc = (sbyte*)(b + 192);
                for (int ib = 0; ib < 16; ++ib) ysc[ib] = (sbyte)Math.Min(127, QuantMath.NearestInt(iscale * scales[ib]));
                float dAll = HalfConvert.ReadFp16(b + 208);
                for (int j = 0; j < 16; ++j)
                {
                    float d = dAll * ysc[j];
                    if (d == 0) continue;
                    for (int ii = 0; ii < 16; ++ii)
                    {
                        int l = QuantMath.NearestInt(x[16 * j + ii] / d);
                        l = Math.Max(-32, Math.Min(31, l));
                        L[16 * j + ii] = (sbyte)(l + 32);
                    }
                }
                byte* ql = b;
                byte* qh = b + 128;
                for (int j = 0; j < BlockSize; j += 128)
                {
                    for (int l = 0; l < 32; ++l)
                    {
                        int q1 = L[j + l + 0] & 0xF;
                        int q2 = L[j + l + 32] & 0xF;
                        int q3 = L[j + l + 64] & 0xF;
                        int q4 = L[j + l + 96] & 0xF;
                        ql[l + 0] = (byte)(q1 | (q3 << 4));
                        ql[l + 32] = (byte)(q2 | (q4 << 4));
                        qh[l] = (byte)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
                    }
                    ql += 64; qh += 32;
                }
            }
        }
    }
}
