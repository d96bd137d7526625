using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Models.Synthetic;
using OpenWeights.Training;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>
/// The mixture-of-experts feed-forward of training (<see cref="ExpertFeedForward"/>): its forward equals the inference
/// layer's (<see cref="ExpertLayer.Forward"/>), and its backward — through the frozen experts and the router, the choice
/// of experts fixed — matches central finite differences of the forward in x, for every routing the table's families use
/// (softmax top-k with and without renormalisation and with a weight scale, softmax over the selected, sigmoid top-1 with
/// the weight on the expert's input and a shared expert) and for SwiGLU and GeGLU experts.
/// </summary>
public class ExpertFeedForwardGradientTests(ITestOutputHelper output)
{
    public static TheoryData<string> Routings() => new(["softmax-norm", "softmax", "softmax-scaled", "softmax-weight", "sigmoid-before-shared", "gelu"]);

    /// <summary>An expert layer over tiny-qwen3moe's first layer's tensors (16 experts of 256, dim 256) with the routing named.</summary>
    private static (ExpertLayer Layer, Activation Act) Layer(DecoderModel m, string routing)
    {
        var x = m.Layers[0].Experts!;
        ExpertRouting r = routing switch
        {
            "softmax-norm" or "gelu" => new(ExpertGating.Softmax, NormalizeWeights: true),
            "softmax" => new(ExpertGating.Softmax, NormalizeWeights: false),
            "softmax-scaled" => new(ExpertGating.Softmax, NormalizeWeights: true, WeightScale: 2.5f),
            "softmax-weight" => new(ExpertGating.SoftmaxWeight, NormalizeWeights: false),
            "sigmoid-before-shared" => new(ExpertGating.Sigmoid, NormalizeWeights: false, WeightBeforeFfn: true, SelectOnLogits: true),
            _ => throw new ArgumentException(routing),
        };
        int k = routing == "sigmoid-before-shared" ? 1 : x.Used;
        var layer = new ExpertLayer(x.Router, x.Gate, x.Up, x.Down, k, r)
        {
            // another layer's expert 0 as the shared expert: a dense gated feed-forward of the same shape
            Shared = routing == "sigmoid-before-shared" ? new SharedExpert(m.Layers[1].Experts!.Gate[0], m.Layers[1].Experts!.Up[0], m.Layers[1].Experts!.Down[0]) : null,
        };
        return (layer, routing == "gelu" ? Activation.GeluTanh : Activation.SiLU);
    }

    [Theory]
    [MemberData(nameof(Routings))]
    public void ForwardEqualsInferenceAndBackwardMatchesFiniteDifferences(string routing)
    {
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen3moe"), SynthType.Parse("f32"), path, threads: 2);
        using var m = DecoderModel.Load(path, repack: false);
        var (layer, act) = Layer(m, routing);
        int n = 3, dim = layer.Dim;
        var x = Random(n * dim, 1, 3f); var r = Random(n * dim, 2);
        var moe = new ExpertFeedForward { GeluFormula = act == Activation.GeluTanh };

        // the forward equals the inference layer's (GeGLU: the inference table; the formula is checked below)
        var y = new float[n * dim];
        new ExpertFeedForward().Forward(layer, x, y, n, act, 2);
        var s = m.CreateState(n, 16);
        x.CopyTo(s.Xb, 0);
        layer.Forward(s, n, 2, act);
        double fwd = 0, scale = 0;
        for (int i = 0; i < n * dim; i++) { fwd = Math.Max(fwd, Math.Abs(y[i] - s.Xb[i])); scale = Math.Max(scale, Math.Abs(s.Xb[i])); }
        Assert.True(fwd / scale < 1e-5, $"forward vs inference: {fwd / scale:E2}");

        moe.Forward(layer, x, y, n, act, 2);
        var ids = moe.Ids.ToArray();
        bool flipped = false;
        double Loss()
        {
            var yy = new float[n * dim];
            moe.Forward(layer, x, yy, n, act, 2);
            flipped |= !moe.Ids.SequenceEqual(ids);
            return Dot(yy, r);
        }
        moe.Forward(layer, x, y, n, act, 2);
        var dx = new float[n * dim];
        moe.Backward(layer, r, x, dx, n, act, 2);
        double err = RelError(Loss, x, dx, All(n * dim));
        // the router's part of dx is large enough that the check sees it: without it the error is far above the tolerance
        moe.SkipRouterGradient = true;
        moe.Forward(layer, x, y, n, act, 2);
        var dxNoRouter = new float[n * dim];
        moe.Backward(layer, r, x, dxNoRouter, n, act, 2);
        double errNoRouter = RelError(Loss, x, dxNoRouter, All(n * dim));
        output.WriteLine($"{routing}: forward vs inference {fwd / scale:E2}, backward vs finite differences {err:E2} (without the router's part {errNoRouter:E2}), experts {string.Join(" ", ids)}");
        Assert.False(flipped, "a finite-difference step changed the choice of experts (pick inputs with clearer margins)");
        Assert.InRange(err, 0, 1e-2);
        Assert.True(errNoRouter > Math.Max(10 * err, 5e-3), $"the router's part of dx is too small to be checked: {errNoRouter:E2}");
    }

    [Fact]
    public void RouterGradientIsPartOfIt()
    {
        // with the router's path left out (weights as constants) the input gradient is measurably wrong: the check above
        // would catch a backward that forgot it
        var logits = Random(16, 3, 2f);
        int[] ids = [3, 7];
        var dl = new float[16];
        ExpertFeedForward.RouteBackward(new ExpertRouting(ExpertGating.Softmax, true), logits, ids, [1f, -1f], dl);
        Assert.True(dl.Max(Math.Abs) > 1e-3f);
        // normalised softmax top-k only depends on the selected logits
        Assert.All(Enumerable.Range(0, 16).Where(i => i is not 3 and not 7), i => Assert.Equal(0f, dl[i], 1e-7f));
        // softmax without renormalisation moves every logit
        ExpertFeedForward.RouteBackward(new ExpertRouting(ExpertGating.Softmax, false), logits, ids, [1f, -1f], dl);
        Assert.All(Enumerable.Range(0, 16), i => Assert.NotEqual(0f, dl[i]));
    }
}
