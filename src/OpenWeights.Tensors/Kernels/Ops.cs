using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// Element-wise and reduction kernels of the transformer forward pass. Each follows ggml's float
/// arithmetic (sums of squares and softmax denominators accumulated in double) so that our logits
/// agree with llama.cpp's; vector work goes through TensorPrimitives (SIMD, with its own scalar fallback).
/// </summary>
public static class Ops
{
    /// <summary>y = x / sqrt(mean(x²) + eps) * w. x, y, w: (n). y may alias x.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, float eps)
    {
        double sum = 0;
        for (int i = 0; i < x.Length; i++) sum += (double)(x[i] * x[i]);
        float mean = (float)(sum / x.Length);
        float scale = 1.0f / MathF.Sqrt(mean + eps);
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Multiply(y, w, y);
    }

    /// <summary>In-place softmax over x: (n).</summary>
    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        double sum = FastExp.IsSupported ? ExpMinusMaxAndSum(x, max) : ExpMinusMaxAndSumReference(x, max);
        TensorPrimitives.Multiply(x, (float)(1.0 / sum), x);
    }

    /// <summary>x = e^(x − max) in place (<see cref="FastExp"/>, one pass), returning Σ in double as ggml's soft_max does.</summary>
    public static unsafe double ExpMinusMaxAndSum(Span<float> x, float max)
    {
        int i = 0;
        double sum = 0;
        fixed (float* p = x)
        {
            var m = Vector256.Create(max);
            var a = Vector256<double>.Zero; var b = a;
            for (; i + 8 <= x.Length; i += 8)
            {
                var e = FastExp.Exp(Vector256.Load(p + i) - m);
                e.Store(p + i);
                a += Avx.ConvertToVector256Double(e.GetLower());
                b += Avx.ConvertToVector256Double(e.GetUpper());
            }
            sum = Vector256.Sum(a + b);
        }
        for (; i < x.Length; i++) { x[i] = FastExp.Scalar(x[i] - max); sum += x[i]; }
        return sum;
    }

    /// <summary>Reference of <see cref="ExpMinusMaxAndSum"/>: <see cref="FastExp.Scalar"/> per element, a sequential double sum.</summary>
    public static double ExpMinusMaxAndSumReference(Span<float> x, float max)
    {
        double sum = 0;
        for (int i = 0; i < x.Length; i++) { x[i] = FastExp.Scalar(x[i] - max); sum += x[i]; }
        return sum;
    }

    /// <summary>Σ x in double (as ggml's soft_max denominator), 8 lanes at a time where AVX is available.</summary>
    public static unsafe double SumAsDouble(ReadOnlySpan<float> x)
    {
        int i = 0;
        double sum = 0;
        if (Avx.IsSupported && x.Length >= 8)
        {
            var a = Vector256<double>.Zero; var b = a;
            fixed (float* p = x)
                for (; i + 8 <= x.Length; i += 8)
                {
                    a += Avx.ConvertToVector256Double(System.Runtime.Intrinsics.Vector128.Load(p + i));
                    b += Avx.ConvertToVector256Double(System.Runtime.Intrinsics.Vector128.Load(p + i + 4));
                }
            sum = Vector256.Sum(a + b);
        }
        for (; i < x.Length; i++) sum += x[i];
        return sum;
    }

    /// <summary>
    /// gate = silu(gate) · up = gate·up / (1 + e^−gate), the SwiGLU activation, vectorized (<see cref="FastExp"/>, else
    /// TensorPrimitives' sigmoid) and, for long inputs (a prefill batch), split over the worker pool. gate, up: (n).
    /// </summary>
    public static unsafe void SwiGlu(Span<float> gate, ReadOnlySpan<float> up, int threads = 1)
    {
        if (up.Length < gate.Length) throw new ArgumentException("swiglu: up shorter than gate");
        fixed (float* g = gate, u = up)
        {
            var job = new SwiGluJob { G = g, U = u, N = gate.Length };
            int chunks = (gate.Length + SwiGluJob.Chunk - 1) / SwiGluJob.Chunk;
            if (threads > 1 && chunks > 1) Threading.WorkerPool.For(threads, chunks, ref job);
            else for (int c = 0; c < chunks; c++) job.Execute(c);
        }
    }

    /// <summary>
    /// gate = gelu(gate) · up, the GeGLU activation of Gemma, with the tanh approximation
    /// gelu(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (Hugging Face's gelu_pytorch_tanh) evaluated the way ggml's CPU
    /// backend evaluates it (GGML_GELU_FP16): x is rounded to F16 and gelu read from a table of F16 results, one per F16
    /// value; x ≤ −10 gives 0 and x ≥ 10 gives x. The table costs at most F16 rounding (relative 2^-11) against the exact
    /// formula (<see cref="GeluTanh"/>), and keeps our logits within float rounding of llama.cpp's. The rounding to F16
    /// is vectorized (TensorPrimitives.ConvertToHalf), the lookup scalar. gate, up: (n).
    /// </summary>
    public static void GeGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        if (up.Length < gate.Length) throw new ArgumentException("geglu: up shorter than gate");
        const int Chunk = 1024;
        Span<Half> h = stackalloc Half[Chunk];
        var table = GeluF16Table;
        for (int i = 0; i < gate.Length; i += Chunk)
        {
            var g = gate.Slice(i, Math.Min(Chunk, gate.Length - i)); var u = up.Slice(i, g.Length); var hh = h[..g.Length];
            TensorPrimitives.ConvertToHalf(g, hh);                                 // x rounded to F16 (nearest even)
            for (int j = 0; j < g.Length; j++)
            {
                float x = g[j];
                g[j] = x <= -10f ? 0f : x >= 10f ? x * u[j] : table[BitConverter.HalfToUInt16Bits(hh[j])] * u[j];
            }
        }
    }

    /// <summary>Scalar reference of <see cref="GeGlu"/>: per element, the table entry of x rounded to F16, times up.</summary>
    public static void GeGluScalar(Span<float> gate, ReadOnlySpan<float> up)
    {
        var table = GeluF16Table;
        for (int i = 0; i < gate.Length; i++)
        {
            float x = gate[i];
            gate[i] = x <= -10f ? 0f : x >= 10f ? x * up[i] : table[BitConverter.HalfToUInt16Bits((Half)x)] * up[i];
        }
    }

    /// <summary>gelu(x) = ½x(1 + tanh(√(2/π)x(1 + 0.044715x²))), the exact tanh approximation in float (ggml_gelu_f32).</summary>
    public static float GeluTanh(float x) => 0.5f * x * (1f + MathF.Tanh(GeluCoef * x * (1f + 0.044715f * x * x)));

    private const float GeluCoef = 0.7978845608028654f; // √(2/π)

    /// <summary>(65536) gelu of every F16 value, rounded to F16 and held as float (ggml's ggml_table_gelu_f16).</summary>
    private static float[] GeluF16Table => geluF16Table ??= BuildGeluF16Table();
    private static float[]? geluF16Table;

    private static float[] BuildGeluF16Table()
    {
        var t = new float[65536];
        for (int i = 0; i < t.Length; i++) t[i] = (float)(Half)GeluTanh((float)BitConverter.UInt16BitsToHalf((ushort)i));
        return t;
    }

    /// <summary>Scalar reference of <see cref="SwiGlu"/>: g / (1 + e^−g) · u per element.</summary>
    public static void SwiGluScalar(Span<float> gate, ReadOnlySpan<float> up)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i];
            gate[i] = g / (1.0f + MathF.Exp(-g)) * up[i];
        }
    }

    private unsafe struct SwiGluJob : Threading.IPoolJob
    {
        public const int Chunk = 4096;
        public float* G, U;
        public int N;

        public readonly void Execute(int c)
        {
            int i0 = c * Chunk, i1 = Math.Min(N, i0 + Chunk);
            if (FastExp.IsSupported)
            {
                // g·u / (1 + e^−g), 8 at a time; the tail by the scalar formula with the same exp
                var one = Vector256<float>.One;
                int i = i0;
                for (; i + 8 <= i1; i += 8)
                {
                    var g = Vector256.Load(G + i);
                    (g * Vector256.Load(U + i) / (one + FastExp.Exp(-g))).Store(G + i);
                }
                for (; i < i1; i++) G[i] = G[i] * U[i] / (1f + FastExp.Scalar(-G[i]));
                return;
            }
            Span<float> sig = stackalloc float[512];
            for (int i = i0; i < i1; i += sig.Length)
            {
                int len = Math.Min(sig.Length, i1 - i);
                var g = new Span<float>(G + i, len);
                var s = sig[..len];
                TensorPrimitives.Sigmoid(g, s);                             // σ(g)
                TensorPrimitives.Multiply(s, g, s);                         // g·σ(g)
                TensorPrimitives.Multiply(s, new ReadOnlySpan<float>(U + i, len), g); // · u
            }
        }
    }
}

/// <summary>How rotary embedding pairs dimensions: NORM rotates (x[2i], x[2i+1]) (llama GGUFs, whose Q/K were permuted at conversion); NEOX rotates (x[i], x[i+d/2]) (qwen2, HF layout).</summary>
public enum RopeStyle { Norm, Neox }

/// <summary>
/// Rotary position embedding with a precomputed cos/sin table per position, built the way ggml builds it:
/// theta_i = p * freqScale * base^(-2i/nRot) / freqFactor_i, with the power taken by repeated float multiplication.
/// </summary>
public sealed class Rope
{
    public int Dims { get; }          // rotated dimensions per head (n_rot)
    public RopeStyle Style { get; }
    private readonly float freqBase, freqScale;
    private readonly float[]? freqFactors;  // (n_rot/2) llama3-style per-frequency divisors, or null

    public Rope(int dims, RopeStyle style, float freqBase, float freqScale = 1f, float[]? freqFactors = null)
    {
        if (dims % 2 != 0) throw new ArgumentException("rope dimension count must be even");
        if (freqFactors is not null && freqFactors.Length < dims / 2) throw new ArgumentException("rope_freqs has fewer than n_rot/2 factors");
        Dims = dims; Style = style; this.freqBase = freqBase; this.freqScale = freqScale; this.freqFactors = freqFactors;
    }

    /// <summary>Fills cos/sin tables for one position: cos, sin: (Dims/2).</summary>
    public void Angles(int pos, Span<float> cos, Span<float> sin)
    {
        float thetaScale = MathF.Pow(freqBase, -2.0f / Dims);
        float theta = pos;
        for (int i = 0; i < Dims / 2; i++)
        {
            float t = freqFactors is null ? theta : theta / freqFactors[i];
            t *= freqScale;
            cos[i] = MathF.Cos(t);
            sin[i] = MathF.Sin(t);
            theta *= thetaScale;
        }
    }

    /// <summary>Rotates each head of x in place. x: (nHeads, headDim); cos, sin: (Dims/2) from <see cref="Angles"/>.</summary>
    public void Apply(Span<float> x, int nHeads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = Dims / 2;
        for (int h = 0; h < nHeads; h++)
        {
            var v = x.Slice(h * headDim, headDim);
            if (Style == RopeStyle.Norm)
            {
                for (int i = 0; i < half; i++)
                {
                    float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * cos[i] - b * sin[i];
                    v[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
            else
            {
                for (int i = 0; i < half; i++)
                {
                    float a = v[i], b = v[i + half];
                    v[i] = a * cos[i] - b * sin[i];
                    v[i + half] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}
