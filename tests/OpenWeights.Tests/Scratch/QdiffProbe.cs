using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tests.Oracle;

namespace OpenWeights.Tests.Scratch;

public class QdiffProbe(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12, 13, 14, 99, 600];

    private static SynthPreset P(string s) => s.Contains('@') ? SynthPreset.Get(s.Split('@')[0]) with { Layers = int.Parse(s.Split('@')[1]) } : SynthPreset.Get(s);

    [Fact]
    public void Probe()
    {
        var spec = Environment.GetEnvironmentVariable("QDIFF_CASES");
        if (spec is null) return;
        foreach (var c in spec.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = c.Split('|');
            string preset = f[0], type = f[1];
            var rules = f.Length > 2 && f[2].Length > 0 ? f[2].Split(',').Select(r => r.Split('=')).ToArray() : [];
            int lt = f.Length > 3 ? int.Parse(f[3]) : 2;
            using var dir = new TempDir();
            var path = dir.File("m.gguf");
            Func<SyntheticModel.PlannedTensor, GgmlType>? retype = rules.Length == 0 ? null : t =>
            {
                foreach (var r in rules)
                    if (t.Dims.Length == 2 && t.Name.Contains(r[0], StringComparison.Ordinal)) return GgmlTypes.TryParse(r[1], out var g) ? g : throw new Exception(r[1]);
                return t.Type;
            };
            SyntheticModel.Write(P(preset), SynthType.Parse(type), path, threads: 2, retype: retype);
            using var model = DecoderModel.Load(path);
            var cache = model.CreateCache(64);
            var state = model.CreateState(Prompt.Length, 64);
            int v = model.Config.VocabSize;
            var ours = new float[Prompt.Length * v];
            model.Forward(Prompt, cache, state, 2, ours);
            var theirs = LlamaCpp.Logits(path, Prompt, threads: lt);
            if (Environment.GetEnvironmentVariable("QDIFF_SELF") == "1")
            {
                OpenWeights.Tensors.Kernels.WeightMatrix.RepackEnabled = false;
                using var m2 = DecoderModel.Load(path);
                var o2 = new float[Prompt.Length * v];
                m2.Forward(Prompt, m2.CreateCache(64), m2.CreateState(Prompt.Length, 64), 1, o2);
                OpenWeights.Tensors.Kernels.WeightMatrix.RepackEnabled = true;
                theirs = Enumerable.Range(0, Prompt.Length).Select(t => o2.AsSpan(t * v, v).ToArray()).ToArray();
            }
            var sb = new System.Text.StringBuilder($"{c}: ");
            {
                using var m1 = DecoderModel.Load(path);
                var o1 = new float[v];
                m1.Forward(Prompt[..1], m1.CreateCache(64), m1.CreateState(1, 64), 2, o1);
                var (a1, _) = Compare.Logits(ours.AsSpan(0, v), o1);
                var (a2, _) = Compare.Logits(o1, theirs[0]);
                var one = LlamaCpp.Logits(path, Prompt[..1], threads: lt)[0];
                var (a3, _) = Compare.Logits(one, theirs[0]);
                var (a4, _) = Compare.Logits(one, o1);
                double sc = theirs[0].Max(Math.Abs);
                sb.Append($"[t0: ours16 vs ours1 {a1 / sc:E1}; ours1 vs llama16 {a2 / sc:E1}; llama1 vs llama16 {a3 / sc:E1}; llama1 vs ours1 {a4 / sc:E1}] ");
            }
            for (int t = 0; t < Prompt.Length; t++)
            {
                var (maxAbs, cos) = Compare.Logits(ours.AsSpan(t * v, v), theirs[t]);
                double scale = theirs[t].Max(Math.Abs);
                sb.Append($"{maxAbs / scale:E1} ");
            }
            output.WriteLine(sb.ToString());
        }
    }

    [Fact]
    public void Dump()
    {
        var spec = Environment.GetEnvironmentVariable("QDIFF_DUMP");
        if (spec is null) return;
        var f = spec.Split('|');
        var rules = f.Length > 2 && f[2].Length > 0 ? f[2].Split(',').Select(r => r.Split('=')).ToArray() : [];
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        Func<SyntheticModel.PlannedTensor, GgmlType>? retype = rules.Length == 0 ? null : t =>
        {
            foreach (var r in rules)
                if (t.Dims.Length == 2 && t.Name.Contains(r[0], StringComparison.Ordinal)) return GgmlTypes.TryParse(r[1], out var g) ? g : throw new Exception(r[1]);
            return t.Type;
        };
        SyntheticModel.Write(P(f[0]), SynthType.Parse(f[1]), path, threads: 2, retype: retype);
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(64);
        var state = model.CreateState(Prompt.Length, 64);
        int v = model.Config.VocabSize;
        var ours = new float[Prompt.Length * v];
        model.Forward(Prompt, cache, state, 2, ours);
        var plain = GgmlDump.Logits(path, Prompt, false);
        var dumped = GgmlDump.Logits(path, Prompt, true);
        string Row(float[][] th)
        {
            var sb = new System.Text.StringBuilder();
            for (int t = 0; t < Prompt.Length; t++)
            {
                var (maxAbs, _) = Compare.Logits(ours.AsSpan(t * v, v), th[t]);
                sb.Append($"{maxAbs / th[t].Max(Math.Abs):E1} ");
            }
            return sb.ToString();
        }
        output.WriteLine("plain : " + Row(plain));
        output.WriteLine("dumped: " + Row(dumped));
        var weights = new Dictionary<string, Linear>();
        foreach (var L in model.Layers) foreach (var lin in L.Projections) weights[lin.Name] = lin;
        weights[model.Output.Name] = model.Output;
        output.WriteLine("weights: " + string.Join(",", weights.Keys.Take(3)) + " nodes " + GgmlDump.Nodes.Count);
        {
            var n16 = GgmlDump.Nodes.ToList();
            GgmlDump.Logits(path, Prompt[..1], true);
            var n1 = GgmlDump.Nodes.ToList();
            var sbc = new System.Text.StringBuilder("t0 16 vs 1: ");
            foreach (var a in n1)
            {
                var b = n16.FirstOrDefault(x => x.Name == a.Name && x.Op == a.Op);
                if (b is null || a.Data is null || b.Data is null || a.Ne[0] != b.Ne[0]) continue;
                int m = (int)a.Ne[0]; double md = 0, sc = 0;
                for (int j = 0; j < m; j++) { md = Math.Max(md, Math.Abs(a.Data[j] - b.Data[j])); sc = Math.Max(sc, Math.Abs(a.Data[j])); }
                sbc.Append($"{a.Name}:{a.Op} {md / sc:E1} | ");
            }
            output.WriteLine(sbc.ToString());
            GgmlDump.Nodes.Clear(); GgmlDump.Nodes.AddRange(n16);
        }
        output.WriteLine(string.Join(" ", GgmlDump.Nodes.Select(n => $"{n.Name}:{n.Op}({n.Src0},{n.Src1})")));
        {
            var e = GgmlDump.Nodes.First(x => x.Op == 40 && x.Src0 == "token_embd.weight");
            int dm = (int)e.Ne[0]; var row = new float[dm]; var sbE = new System.Text.StringBuilder("embd rows: ");
            for (int t = 0; t < Prompt.Length; t++)
            {
                model.TokenEmbedding.DecodeRow(Prompt[t], row);
                double md = 0; for (int j = 0; j < dm; j++) md = Math.Max(md, Math.Abs(row[j] - e.Data![t * dm + j]));
                sbE.Append($"{md:E1} ");
            }
            output.WriteLine(sbE.ToString());
        }
        var byName = new Dictionary<string, GgmlDump.Node>();
        foreach (var n in GgmlDump.Nodes) byName[n.Name] = n;
        foreach (var n in GgmlDump.Nodes)
        {
            if (!n.Name.StartsWith("ffn_geglu", StringComparison.Ordinal) && !n.Name.StartsWith("ffn_swiglu", StringComparison.Ordinal)) continue;
            var g = byName[n.Src0].Data!.ToArray(); var u = byName[n.Src1].Data!;
            if (n.Name.StartsWith("ffn_geglu", StringComparison.Ordinal)) OpenWeights.Tensors.Kernels.Ops.GeGluScalar(g, u); else OpenWeights.Tensors.Kernels.Ops.SwiGluScalar(g, u);
            int rows = (int)n.Ne[0];
            var sb = new System.Text.StringBuilder($"{n.Name} = glu({n.Src0},{n.Src1}): ");
            for (int t = 0; t < g.Length / rows; t++)
            {
                double md = 0, sc = 0; int at = 0;
                for (int j = 0; j < rows; j++) { double d = Math.Abs(g[t * rows + j] - n.Data![t * rows + j]); if (d > md) { md = d; at = j; } sc = Math.Max(sc, Math.Abs(n.Data[t * rows + j])); }
                if (md / sc > 1e-6) sb.Append($"[t{t} {md / sc:E1} at {at}: gate {byName[n.Src0].Data![t * rows + at]:R} up {u[t * rows + at]:R} ours {g[t * rows + at]:R} theirs {n.Data![t * rows + at]:R}] ");
            }
            output.WriteLine(sb.ToString());
        }
        foreach (var n in GgmlDump.Nodes)
        {
            if (n.Src1Data is null || n.Data is null || !weights.TryGetValue(n.Src0, out var lin)) continue;
            int rows = (int)n.Ne[0], tok = (int)(n.Ne1[1] * n.Ne1[2]);
            var y = new float[tok * rows];
            lin.Weight.MatMul(n.Src1Data, y, tok, 1);
            var sb = new System.Text.StringBuilder($"{n.Name} = {n.Src0} x {n.Src1} ({lin.Weight.Type}, {lin.Weight.Cols}->{rows}, n {tok}): ");
            double worst = 0;
            for (int t = 0; t < tok; t++)
            {
                double md = 0, sc = 0;
                for (int j = 0; j < rows; j++) { md = Math.Max(md, Math.Abs(y[t * rows + j] - n.Data[t * rows + j])); sc = Math.Max(sc, Math.Abs(n.Data[t * rows + j])); }
                worst = Math.Max(worst, md / sc);
                if (md / sc > 1e-5) sb.Append($"[t{t} {md / sc:E1}] ");
            }
            sb.Append($"worst {worst:E1}");
            int K = lin.Weight.Cols, blk = lin.Weight.Type is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 ? 32 : 256;
            for (int t = 0; t < tok; t++)
                for (int b0 = 0; b0 < K; b0 += blk)
                {
                    float amax = 0; for (int j = b0; j < b0 + blk; j++) amax = Math.Max(amax, Math.Abs(n.Src1Data[t * K + j]));
                    if (amax == 0) continue;
                    float id = 127f / amax;
                    for (int j = b0; j < b0 + blk; j++)
                    {
                        float q = n.Src1Data[t * K + j] * id; double fr = Math.Abs(q - Math.Floor(q) - 0.5);
                        if (fr < 2e-4)
                        {
                            var x2 = n.Src1Data.ToArray(); x2[t * K + j] += (float)((q - Math.Floor(q) < 0.5 ? 2 : -2) * fr / id);
                            var y2 = new float[tok * rows]; lin.Weight.MatMul(x2, y2, tok, 1);
                            double md = 0, sc = 0, n2 = 0, d2 = 0;
                            for (int r = 0; r < rows; r++) { double dd = y2[t * rows + r] - y[t * rows + r]; md = Math.Max(md, Math.Abs(dd)); sc = Math.Max(sc, Math.Abs(y[t * rows + r])); n2 += y[t*rows+r]*(double)y[t*rows+r]; d2 += dd*dd; }
                            sb.Append($" |near tie t{t} k{j} q {q:F6} (margin {fr:E1}); flip changes row by max {md / sc:E1}, L2 {Math.Sqrt(d2 / n2):E1}|");
                        }
                    }
                }
            output.WriteLine(sb.ToString());
        }
    }
}

public static unsafe class GgmlDump
{
    public sealed record Node(string Name, int Op, string Src0, string Src1, long[] Ne1, float[]? Src1Data, float[]? Data, long[] Ne);
    public static List<Node> Nodes = [];

    private static string Name(byte* t) => t == null ? "" : System.Text.Encoding.ASCII.GetString(t + 256, 64).TrimEnd('\0');
    private static float[]? F32(byte* t)
    {
        if (t == null || *(int*)t != 0) return null; // GGML_TYPE_F32
        long* ne = (long*)(t + 16); ulong* nb = (ulong*)(t + 48);
        long n = ne[0] * ne[1] * ne[2] * ne[3];
        if (nb[0] != 4 || (long)nb[1] != ne[0] * 4 || (long)nb[2] != ne[0] * ne[1] * 4) return null;
        float* d = *(float**)(t + 248);
        if (d == null) return null;
        return new ReadOnlySpan<float>(d, (int)n).ToArray();
    }

    [System.Runtime.InteropServices.UnmanagedCallersOnly(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
    public static byte Callback(byte* t, byte ask, void* ud)
    {
        if (ask != 0) return 1;
        int op = *(int*)(t + 80);
        byte* s0 = *(byte**)(t + 152), s1 = *(byte**)(t + 160);
        long[] ne = [((long*)(t + 16))[0], ((long*)(t + 16))[1], ((long*)(t + 16))[2], ((long*)(t + 16))[3]];
        long[] ne1 = s1 == null ? [] : [((long*)(s1 + 16))[0], ((long*)(s1 + 16))[1], ((long*)(s1 + 16))[2], ((long*)(s1 + 16))[3]];
        bool weightMat = Name(s0).EndsWith(".weight", StringComparison.Ordinal);
        lock (Nodes) Nodes.Add(new Node(Name(t), op, Name(s0), Name(s1), ne1, weightMat ? F32(s1) : null, F32(t), ne));
        return 1;
    }

    public static float[][] Logits(string path, int[] tokens, bool dump)
    {
        LlamaCpp.Init();
        Nodes.Clear();
        var p = new LLama.Common.ModelParams(path)
        {
            ContextSize = 64, BatchSize = 64, UBatchSize = 64, GpuLayerCount = 0, Threads = 2, BatchThreads = 2,
            TypeK = LLama.Native.GGMLType.GGML_TYPE_F32, TypeV = LLama.Native.GGMLType.GGML_TYPE_F32, FlashAttention = false,
        };
        using var w = LLama.LLamaWeights.LoadFromFile(p);
        LLama.Extensions.IContextParamsExtensions.ToLlamaContextParams(p, out var lp);
        if (dump) lp.cb_eval = (nint)(delegate* unmanaged[Cdecl]<byte*, byte, void*, byte>)&Callback;
        using var ctx = LLama.Native.SafeLLamaContextHandle.Create(w.NativeHandle, lp);
        var batch = new LLama.Native.LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add((LLama.Native.LLamaToken)tokens[i], i, LLama.Native.LLamaSeqId.Zero, true);
        var r = ctx.Decode(batch);
        if (r != LLama.Native.DecodeResult.Ok) throw new InvalidOperationException($"decode failed: {r}");
        var result = new float[tokens.Length][];
        for (int i = 0; i < tokens.Length; i++) result[i] = ctx.GetLogitsIth(i).ToArray();
        return result;
    }
}
