using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Models.DeepSeek;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>
/// DeepSeek V3-like and V2-Lite-like models against llama.cpp's deepseek2 (multi-head latent attention, its absorbed MQA
/// form) on the same random-weight files: a dense first layer, then 16 experts with shared experts; V3: sigmoid + selection
/// bias in 4 groups of which 2, q_lora; V2-Lite: softmax without groups, attn_q.
/// </summary>
public class DeepSeek2Tests(ITestOutputHelper output)
{
    public static TheoryData<string, string, double, double> Types() => new()
    {
        // preset, type, max |diff| / max |logit|, min cosine
        { "tiny-deepseek3", "f32", 1e-4, 0.99999 },
        { "tiny-deepseek3", "q8_0", 1e-4, 0.99999 },
        { "tiny-deepseek3", "q4_k_m", 1e-4, 0.99999 },
        { "tiny-deepseek2-lite", "f32", 1e-4, 0.99999 },
        { "tiny-deepseek2-lite", "q8_0", 1e-4, 0.99999 },
        { "tiny-deepseek2-lite", "q4_k_m", 1e-4, 0.99999 },
    };

    [Theory]
    [MemberData(nameof(Types))]
    public void LogitsAgreeWithLlamaCpp(string preset, string type, double relTol, double minCos)
    {
        using var dir = new TempDir();
        var path = Write(dir, preset, type);
        var (rel, cos, margin) = MoeOracle.AssertAgrees(path, relTol, minCos);
        output.WriteLine($"{preset} {type}: worst rel {rel:E2}, worst cos {cos:F9}, routing margin {margin:E2}");
    }
}
