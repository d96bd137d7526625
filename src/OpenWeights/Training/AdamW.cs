namespace OpenWeights.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter) with decoupled weight decay, as torch.optim.AdamW computes it:
///   p -= lr·wd·p;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  p -= lr · (m/(1−β1ᵗ)) / (sqrt(v/(1−β2ᵗ)) + eps).
/// Parameters are a fixed list of F32 arrays with their gradients; moments are F32, one pair per parameter.
/// </summary>
public sealed class AdamW
{
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Eps { get; init; } = 1e-8f;
    public float WeightDecay { get; init; }
    public int StepCount { get; set; }
    public IReadOnlyList<(float[] Param, float[] Grad)> Params { get; }
    public float[][] M { get; }
    public float[][] V { get; }

    public AdamW(IReadOnlyList<(float[] Param, float[] Grad)> parameters)
    {
        Params = parameters;
        M = parameters.Select(p => new float[p.Param.Length]).ToArray();
        V = parameters.Select(p => new float[p.Param.Length]).ToArray();
    }

    /// <summary>Global L2 norm of all gradients (double accumulation).</summary>
    public double GradNorm()
    {
        double s = 0;
        foreach (var (_, g) in Params) foreach (var x in g) s += (double)x * x;
        return Math.Sqrt(s);
    }

    /// <summary>Scales all gradients so that their global norm is at most maxNorm (torch's clip_grad_norm_). Returns the norm before clipping.</summary>
    public double ClipGradNorm(double maxNorm)
    {
        double norm = GradNorm();
        if (maxNorm > 0 && norm > maxNorm)
        {
            float f = (float)(maxNorm / (norm + 1e-6));
            foreach (var (_, g) in Params) System.Numerics.Tensors.TensorPrimitives.Multiply(g, f, g);
        }
        return norm;
    }

    public void Step(float lr)
    {
        StepCount++;
        double bc1 = 1 - Math.Pow(Beta1, StepCount), bc2 = 1 - Math.Pow(Beta2, StepCount);
        for (int k = 0; k < Params.Count; k++)
        {
            var (p, g) = Params[k]; var m = M[k]; var v = V[k];
            for (int i = 0; i < p.Length; i++)
            {
                p[i] -= lr * WeightDecay * p[i];
                m[i] = Beta1 * m[i] + (1 - Beta1) * g[i];
                v[i] = Beta2 * v[i] + (1 - Beta2) * g[i] * g[i];
                p[i] -= (float)(lr * (m[i] / bc1) / (Math.Sqrt(v[i] / bc2) + Eps));
            }
        }
    }
}

/// <summary>Linear warmup to the peak rate, then cosine decay to minRatio·peak at totalSteps (transformers' get_cosine_schedule_with_warmup with a floor).</summary>
public sealed record LrSchedule(float Peak, int WarmupSteps, int TotalSteps, float MinRatio = 0f)
{
    /// <summary>Learning rate for optimiser step s (0-based).</summary>
    public float At(int s)
    {
        if (s < WarmupSteps) return Peak * (s + 1) / WarmupSteps;
        int decay = Math.Max(1, TotalSteps - WarmupSteps);
        double progress = Math.Clamp((double)(s - WarmupSteps) / decay, 0, 1);
        double cos = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return (float)(Peak * (MinRatio + (1 - MinRatio) * cos));
    }
}
