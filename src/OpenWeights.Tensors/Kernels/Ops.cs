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

    /// <summary>
    /// In-place softmax over x: (n) with one more logit, <paramref name="sink"/>, in the denominator only (gpt-oss's
    /// attention sinks): max = max(x, sink), x_j = e^(x_j − max) / (Σ_k e^(x_k − max) + e^(sink − max)). The sink's
    /// term joins the double sum after the others, as in ggml's soft_max with sinks.
    /// </summary>
    public static void SoftmaxWithSink(Span<float> x, float sink)
    {
        float max = MathF.Max(TensorPrimitives.Max(x), sink);
        double sum = FastExp.IsSupported ? ExpMinusMaxAndSum(x, max) : ExpMinusMaxAndSumReference(x, max);
        sum += FastExp.Scalar(sink - max);
        TensorPrimitives.Multiply(x, (float)(1.0 / sum), x);
    }

    /// <summary>Scalar reference of <see cref="SoftmaxWithSink"/>: the definition in double with MathF.Exp.</summary>
    public static void SoftmaxWithSinkScalar(Span<float> x, float sink)
    {
        float max = sink;
        foreach (var v in x) max = MathF.Max(max, v);
        double sum = Math.Exp(sink - max);
        for (int i = 0; i < x.Length; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        for (int i = 0; i < x.Length; i++) x[i] = (float)(x[i] / sum);
    }

    /// <summary>x = e^(x − max) in place (<see cref="FastExp"/>, one pass), returning Σ in double as ggml's soft_max does.</summary>
    public static unsafe double ExpMinusMaxAndSum(Span<float> x, float max)
    {
        int i = 0;
        double sum = 0;
        fixed (float* p = x)
        {
            var m = Vector256.Create(max);
            var a = Vector256<double>.Zero; var b = a; var c = a; var d = a;
            // 16 at a time into four double accumulators: one pair's adds would wait on their own latency (attention's
            // rows at long contexts spend a tenth of prefill here)
            for (; i + 16 <= x.Length; i += 16)
            {
                var e = FastExp.Exp(Vector256.Load(p + i) - m);
                var f = FastExp.Exp(Vector256.Load(p + i + 8) - m);
                e.Store(p + i); f.Store(p + i + 8);
                a += Avx.ConvertToVector256Double(e.GetLower()); b += Avx.ConvertToVector256Double(e.GetUpper());
                c += Avx.ConvertToVector256Double(f.GetLower()); d += Avx.ConvertToVector256Double(f.GetUpper());
            }
            for (; i + 8 <= x.Length; i += 8)
            {
                var e = FastExp.Exp(Vector256.Load(p + i) - m);
                e.Store(p + i);
                a += Avx.ConvertToVector256Double(e.GetLower());
                b += Avx.ConvertToVector256Double(e.GetUpper());
            }
            sum = Vector256.Sum((a + c) + (b + d));
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

    /// <summary>gpt-oss's clamped SwiGLU constants (llama.cpp's swiglu_oai, transformers' GptOssExperts): α and the clamp limit.</summary>
    public const float OaiAlpha = 1.702f, OaiLimit = 7f;

    /// <summary>
    /// gate = swiglu_oai(gate, up), gpt-oss's clamped SwiGLU: g = min(gate, limit), u = clamp(up, −limit, limit),
    /// gate = g / (1 + e^(−α·g)) · (u + 1) (a sigmoid-weighted gate with slope α, and up shifted by one). Vectorized with
    /// <see cref="FastExp"/>; <see cref="SwiGluOaiScalar"/> is its reference. gate, up: (n).
    /// </summary>
    public static unsafe void SwiGluOai(Span<float> gate, ReadOnlySpan<float> up, float alpha = OaiAlpha, float limit = OaiLimit)
    {
        if (up.Length < gate.Length) throw new ArgumentException("swiglu_oai: up shorter than gate");
        int n = gate.Length, i = 0;
        fixed (float* g = gate, u = up)
        {
            if (FastExp.IsSupported)
            {
                var one = Vector256<float>.One; var lim = Vector256.Create(limit); var nlim = Vector256.Create(-limit); var na = Vector256.Create(-alpha);
                for (; i + 8 <= n; i += 8)
                {
                    var x = Vector256.Min(Vector256.Load(g + i), lim);
                    var y = Vector256.Min(Vector256.Max(Vector256.Load(u + i), nlim), lim);
                    (x / (one + FastExp.Exp(na * x)) * (y + one)).Store(g + i);
                }
                for (; i < n; i++)
                {
                    float x = MathF.Min(g[i], limit), y = Math.Clamp(u[i], -limit, limit);
                    g[i] = x / (1f + FastExp.Scalar(-alpha * x)) * (y + 1f);
                }
                return;
            }
        }
        SwiGluOaiScalar(gate, up, alpha, limit);
    }

    /// <summary>Scalar reference of <see cref="SwiGluOai"/> (ggml's swiglu_oai: min(g, limit) / (1 + e^(α·−g)) · (clamp(u) + 1)).</summary>
    public static void SwiGluOaiScalar(Span<float> gate, ReadOnlySpan<float> up, float alpha = OaiAlpha, float limit = OaiLimit)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float x = MathF.Min(gate[i], limit), y = Math.Clamp(up[i], -limit, limit);
            gate[i] = x / (1f + MathF.Exp(alpha * -x)) * (y + 1f);
        }
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
/// YaRN context extension (Peng et al. 2023, "YaRN: Efficient Context Window Extension"), as ggml's rope_yarn does it.
/// With n_rot = <see cref="Rope.Dims"/>, base b, context factor s = 1/freqScale and original context L:
///   corr(β) = n_rot · ln(L / (2π β)) / (2 ln b)  (the pair index whose wavelength fits β turns into L)
///   low = max(0, floor(corr(BetaFast))), high = min(n_rot − 1, ceil(corr(BetaSlow)))
///   ramp_i = (1 − clamp((i − low) / max(0.001, high − low), 0, 1)) · ExtFactor   for pair i
///   θ_i = θinterp_i · (1 − ramp_i) + θextrap_i · ramp_i,  θextrap_i = p · b^(−2i/n_rot) / freqFactor_i, θinterp_i = θextrap_i / s
/// so the fast pairs (i &lt; low) keep their trained angles, the slow pairs (i &gt; high) are interpolated like linear
/// scaling, and the pairs between are mixed. The magnitude correction (0.1·ln s + 1, <see cref="Mscale"/>) is not
/// part of this record: it is the <c>mscale</c> given to <see cref="Rope"/>.
/// </summary>
/// <param name="OriginalContext">L: the context the model was trained at before extension (GGUF `rope.scaling.original_context_length`).</param>
/// <param name="ExtFactor">How much of the ramp applies (1 = YaRN, 0 = plain linear interpolation); GGUF `rope.scaling.yarn_ext_factor`.</param>
/// <param name="BetaFast">Rotations in L above which a pair is extrapolated (kept); ggml's and Hugging Face's default 32.</param>
/// <param name="BetaSlow">Rotations in L below which a pair is interpolated; default 1.</param>
public sealed record RopeYarn(int OriginalContext, float ExtFactor = 1f, float BetaFast = 32f, float BetaSlow = 1f)
{
    /// <summary>YaRN's attention magnitude for a context extended <paramref name="factor"/> times: 0.1·ln(factor) + 1, and 1 when
    /// factor &lt;= 1 (llama.cpp's and transformers' get_mscale).</summary>
    public static float Mscale(float factor) => factor <= 1f ? 1f : 0.1f * MathF.Log(factor) + 1f;

    /// <summary>The ramp's pair range (low, high) for <paramref name="dims"/> rotated dimensions, as ggml_rope_yarn_corr_dims computes it (in float).</summary>
    public (float Low, float High) CorrDims(int dims, float freqBase)
    {
        float CorrDim(float beta) => dims * MathF.Log(OriginalContext / (beta * 2 * MathF.PI)) / (2 * MathF.Log(freqBase));
        float start = MathF.Floor(CorrDim(BetaFast)), end = MathF.Ceiling(CorrDim(BetaSlow));
        return (MathF.Max(0, start), MathF.Min(dims - 1, end));
    }
}

/// <summary>
/// Rotary position embedding with a precomputed cos/sin table per position, built the way ggml builds it:
/// theta_i = p * freqScale * base^(-2i/nRot) / freqFactor_i, with the power taken by repeated float multiplication.
/// Optional: YaRN's ramp between extrapolated and interpolated angles (<see cref="RopeYarn"/>), and a magnitude
/// <c>mscale</c> that multiplies cos and sin (so q·k scales by mscale²): YaRN's 0.1·ln(s) + 1, LongRoPE's attention
/// factor, times any `rope.scaling.attn_factor`. Without either, the table is the plain one, computed as before.
/// </summary>
public sealed class Rope
{
    public int Dims { get; }          // rotated dimensions per head (n_rot)
    public RopeStyle Style { get; }
    /// <summary>The factor on cos and sin (1: plain rotation); the rotated dimensions are scaled by it, the rest of a
    /// partially rotated head is not.</summary>
    public float Mscale => mscale;
    private readonly float freqBase, freqScale;
    private readonly float[]? freqFactors;  // (n_rot/2) per-frequency divisors (llama3 rope_freqs, LongRoPE short/long factors), or null
    private readonly RopeYarn? yarn;
    private readonly float mscale, corrLow, corrHigh;  // magnitude on cos/sin; YaRN ramp range in pairs

    public Rope(int dims, RopeStyle style, float freqBase, float freqScale = 1f, float[]? freqFactors = null, RopeYarn? yarn = null, float mscale = 1f)
    {
        if (dims % 2 != 0) throw new ArgumentException("rope dimension count must be even");
        if (freqFactors is not null && freqFactors.Length < dims / 2) throw new ArgumentException("rope_freqs has fewer than n_rot/2 factors");
        if (!float.IsFinite(mscale)) throw new ArgumentException("rope mscale must be finite");
        if (yarn is not null && (yarn.OriginalContext <= 0 || !float.IsFinite(yarn.ExtFactor) || !float.IsFinite(yarn.BetaFast) || !float.IsFinite(yarn.BetaSlow)))
            throw new ArgumentException("YaRN needs a positive original context and finite ext_factor, beta_fast and beta_slow");
        Dims = dims; Style = style; this.freqBase = freqBase; this.freqScale = freqScale; this.freqFactors = freqFactors;
        this.yarn = yarn is { ExtFactor: not 0f } ? yarn : null; // ext_factor 0: ggml skips the ramp (plain interpolation)
        this.mscale = mscale;
        if (this.yarn is not null) (corrLow, corrHigh) = this.yarn.CorrDims(dims, freqBase);
    }

    /// <summary>Fills cos/sin tables for one position: cos, sin: (Dims/2).</summary>
    public void Angles(int pos, Span<float> cos, Span<float> sin)
    {
        float thetaScale = MathF.Pow(freqBase, -2.0f / Dims);
        float theta = pos;
        if (yarn is null && mscale == 1f)
        {
            for (int i = 0; i < Dims / 2; i++)
            {
                float t = freqFactors is null ? theta : theta / freqFactors[i];
                t *= freqScale;
                cos[i] = MathF.Cos(t);
                sin[i] = MathF.Sin(t);
                theta *= thetaScale;
            }
            return;
        }
        float ext = yarn?.ExtFactor ?? 0f, span = MathF.Max(0.001f, corrHigh - corrLow);
        for (int i = 0; i < Dims / 2; i++)
        {
            float extrap = freqFactors is null ? theta : theta / freqFactors[i];  // the trained angle
            float t = freqScale * extrap;                                          // interpolated
            if (yarn is not null)
            {
                float ramp = (1f - Math.Clamp((i - corrLow) / span, 0f, 1f)) * ext;
                t = t * (1f - ramp) + extrap * ramp;
            }
            cos[i] = MathF.Cos(t) * mscale;
            sin[i] = MathF.Sin(t) * mscale;
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
