using System.Numerics.Tensors;

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
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x); // vectorized, as ggml's soft_max (MathF.Exp per element was most of attention's time)
        double sum = 0;
        for (int i = 0; i < x.Length; i++) sum += x[i];
        TensorPrimitives.Multiply(x, (float)(1.0 / sum), x);
    }

    /// <summary>gate = silu(gate) * up, the SwiGLU activation. gate, up: (n).</summary>
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i];
            gate[i] = g / (1.0f + MathF.Exp(-g)) * up[i];
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
