using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Server;

/// <summary>
/// Many users on one box (issue 16): a prompt computed once serves every later request that starts the same way, in any
/// slot, and replies are bit-identical with and without it; the slots' KV memory stays within its budget, requests that do
/// not fit wait (running ones are preempted and resumed), and each still gets exactly what it gets alone.
/// </summary>
public class SchedulerMemoryTests
{
    private static GenerationOptions Greedy(Tokenizer tok, int max) => new()
    {
        MaxTokens = max, Logprobs = true, TopLogprobs = 3,
        Sampling = new SamplingOptions
        {
            Temperature = 0, TopK = 0, TopP = 1, MinP = 0,
            LogitBias = tok.EndOfGeneration.Where(i => i >= 0).Distinct().ToDictionary(i => i, _ => float.NegativeInfinity), // never stop early
        },
    };

    /// <summary>A reply as bits: every token id and every reported log-probability (top alternatives too).</summary>
    private static async Task<string> Run(Scheduler s, int[] prompt, GenerationOptions o, int adapter = 0)
    {
        var output = new JobOutput(1, limit: 1000);
        s.Submit([new GenerationJob(prompt, o, 0, output, CancellationToken.None) { AdapterId = adapter }]);
        var sb = new System.Text.StringBuilder();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await foreach (var e in output.ReadAllAsync(cts.Token))
        {
            Assert.Null(e.Error);
            foreach (var lp in e.Chunk!.Logprobs ?? [])
            {
                sb.Append(lp.TokenId).Append(':').Append(BitConverter.SingleToInt32Bits(lp.Logprob)).Append('[');
                foreach (var t in lp.Top) sb.Append(t.TokenId).Append('=').Append(BitConverter.SingleToInt32Bits(t.Logprob)).Append(',');
                sb.Append("] ");
            }
            if (e.Chunk.Finish is { } f) return sb.Append(f).ToString();
        }
        throw new InvalidOperationException("no final event");
    }

    private static int[] LongPrompt(Tokenizer tok, string tail) =>
        tok.Encode(string.Concat(Enumerable.Range(0, 12).Select(i => $"rule {i}: the bank keeps every record for seven years. ")) + tail, addSpecial: true);

    [Fact]
    public async Task A_prefix_computed_in_one_scheduler_serves_another_bit_identically()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var o = Greedy(tok, 24);
        int[] first = LongPrompt(tok, "question: how long?"), second = LongPrompt(tok, "question: who decides?");
        Assert.True(first.Length > 200, $"{first.Length} tokens");

        string alone;
        using (var plain = new Scheduler(m, tok, 1, 1024, 2, 4, new ServerMetrics()) { PromptCache = null })
            alone = await Run(plain, second, o);

        var shared = new PrefixCache(1 << 28, "tiny qwen");
        using (var a = new Scheduler(m, tok, 1, 1024, 2, 4, new ServerMetrics()) { PromptCache = shared })
            await Run(a, first, o); // computes the shared start and keeps it
        Assert.True(shared.Count > 2);
        using var b = new Scheduler(m, tok, 1, 1024, 2, 4, new ServerMetrics()) { PromptCache = shared }; // fresh slots: only the cache knows
        string cached = await Run(b, second, o);
        Assert.True(shared.TokensReused >= 128, $"reused {shared.TokensReused} tokens");
        Assert.Equal(alone, cached);
        Assert.Contains("openweights_prompt_cache_reused_tokens_total", b.RenderMemoryMetrics());
    }

    [Fact]
    public async Task An_adapters_prefix_never_serves_the_base_model()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var shared = new PrefixCache(1 << 28, "tiny qwen");
        int[] p = LongPrompt(tok, "q");
        using var s = new Scheduler(m, tok, 1, 1024, 2, 4, new ServerMetrics()) { PromptCache = shared, AdapterSpace = id => "adapter " + id };
        shared.Store("adapter 7", p, FilledCache(m, p)); // as if adapter 7 had computed it
        await Run(s, p, Greedy(tok, 2));
        Assert.Equal(0, shared.TokensReused); // the base model computed its own
    }

    private static OpenWeights.Models.Common.KvCache FilledCache(DecoderModel m, int[] tokens)
    {
        var c = m.CreateCache(1024, OpenWeights.Models.Common.KvCacheTypes.Default);
        c.Length = tokens.Length; // contents do not matter: it must not be used
        return c;
    }

    [Fact]
    public async Task Within_a_small_kv_budget_every_request_is_served_exactly_as_alone()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var o = Greedy(tok, 60);
        var prompts = Enumerable.Range(0, 4).Select(i => LongPrompt(tok, $"case {i}: what now?")).ToArray();
        var alone = new string[prompts.Length];
        using (var plain = new Scheduler(m, tok, 1, 1024, 2, 8, new ServerMetrics()) { PromptCache = null })
            for (int i = 0; i < prompts.Length; i++) alone[i] = await Run(plain, prompts[i], o);

        long bpp;
        using (var probe = m.CreateCache(1, OpenWeights.Models.Common.KvCacheTypes.Default)) bpp = probe.BytesPerPosition;
        long budget = (long)(prompts[0].Length + 60) * bpp * 2; // two requests' worth, for four slots
        using var s = new Scheduler(m, tok, 4, 1024, 2, 8, new ServerMetrics()) { KvBudgetBytes = budget, PromptCache = new PrefixCache(1 << 26, "tiny") };
        long peak = 0;
        using var stop = new CancellationTokenSource();
        var watch = Task.Run(async () => { while (!stop.IsCancellationRequested) { peak = Math.Max(peak, s.KvResidentBytes); await Task.Delay(1); } });
        var got = await Task.WhenAll(prompts.Select(p => Run(s, p, o)));
        stop.Cancel(); await watch;
        Assert.Equal(alone, got);
        long pageSlack = 2L * m.Config.Layers * 2 * 4096 * 4; // each plane's last page, four slots
        Assert.True(peak <= budget + pageSlack, $"peak {peak} > budget {budget}");
        Assert.True(peak > 0);
    }

    [Fact]
    public async Task Preempted_requests_resume_bit_identically()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var o = Greedy(tok, 150);
        int[] a = tok.Encode("the first customer asks about fees", addSpecial: true), b = tok.Encode("the second customer asks about loans", addSpecial: true);
        string aloneA, aloneB;
        using (var plain = new Scheduler(m, tok, 1, 1024, 2, 8, new ServerMetrics()) { PromptCache = null })
        {
            aloneA = await Run(plain, a, o);
            aloneB = await Run(plain, b, o);
        }
        long bpp;
        using (var probe = m.CreateCache(1, OpenWeights.Models.Common.KvCacheTypes.Default)) bpp = probe.BytesPerPosition;
        // both prompts fit together, both replies do not: the younger is preempted while the older grows
        long budget = (a.Length + b.Length + 150 + 60) * bpp;
        foreach (var cache in new PrefixCache?[] { null, new PrefixCache(1 << 26, "tiny", blockTokens: 16) })
        {
            using var s = new Scheduler(m, tok, 2, 1024, 2, 8, new ServerMetrics()) { KvBudgetBytes = budget, PromptCache = cache };
            var got = await Task.WhenAll(Run(s, a, o), Run(s, b, o));
            Assert.True(s.Preemptions > 0, "nothing was preempted: the test does not test");
            Assert.Equal(aloneA, got[0]);
            Assert.Equal(aloneB, got[1]);
        }
    }

    [Fact]
    public async Task A_request_that_alone_outgrows_the_budget_ends_with_length()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        int[] p = tok.Encode("a short question", addSpecial: true);
        long bpp;
        using (var probe = m.CreateCache(1, OpenWeights.Models.Common.KvCacheTypes.Default)) bpp = probe.BytesPerPosition;
        using var s = new Scheduler(m, tok, 2, 1024, 2, 8, new ServerMetrics()) { KvBudgetBytes = (p.Length + 10) * bpp };
        string r = await Run(s, p, Greedy(tok, 100));
        Assert.EndsWith("Length", r);
        Assert.InRange(r.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length - 1, 5, 11); // about ten tokens, then the budget

        var tooLong = LongPrompt(tok, "x");
        var e = Assert.Throws<ApiException>(() => s.Submit([new GenerationJob(tooLong, Greedy(tok, 4), 0, new JobOutput(1, 10), CancellationToken.None)]));
        Assert.Equal(503, e.Status);
        Assert.Equal("insufficient_memory", e.Code);
        Assert.Contains("--kv-budget", e.Message);
    }
}
