namespace OpenWeights.Models;

/// <summary>Rotary scaling tables shared by the readers and writers.</summary>
public static class RopeScaling
{
    /// <summary>
    /// llama3 rope scaling as llama.cpp's converter stores it (the <c>rope_freqs.weight</c> tensor): one divisor per
    /// rotary frequency, from the Hugging Face <c>rope_scaling</c> block (factor, low/high_freq_factor, original context).
    /// </summary>
    public static float[] Llama3FreqFactors(int headDim, double ropeBase, double factor = 8, double lowFreqFactor = 1, double highFreqFactor = 4, int originalContext = 8192)
    {
        var r = new float[headDim / 2];
        double lowWavelen = originalContext / lowFreqFactor, highWavelen = originalContext / highFreqFactor;
        for (int i = 0; i < headDim / 2; i++)
        {
            double freq = 1.0 / Math.Pow(ropeBase, 2.0 * i / headDim);
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highWavelen) r[i] = 1f;
            else if (wavelen > lowWavelen) r[i] = (float)factor;
            else
            {
                double smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                r[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
            }
        }
        return r;
    }
}
