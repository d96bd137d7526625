using System.Text;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tokenizers;
using OpenWeights.Training;

namespace OpenWeights.Tests.Training;

/// <summary>Alpaca records, JSON arrays, plain text split into examples, and refusing what is not UTF-8 (issues 11 and 19).</summary>
public class TrainingDataFormatTests
{
    private static Tokenizer Tok(TempDir dir, bool template = true)
    {
        var path = dir.File(template ? "tok.gguf" : "plain.gguf");
        var preset = SynthPreset.Get("tiny-qwen2");
        SyntheticModel.Write(template ? preset : preset with { ChatTemplate = "" }, SynthType.Parse("f32"), path);
        return Tokenizer.FromGguf(path);
    }

    private static string Trained(Tokenizer tok, TrainExample ex) => tok.Decode([.. ex.Tokens.Where((_, i) => ex.Loss[i])]);
    private static string Context(Tokenizer tok, TrainExample ex) => tok.Decode([.. ex.Tokens.Where((_, i) => !ex.Loss[i])]);

    [Fact]
    public void AlpacaWithAChatTemplateIsAUserAndAssistantExchange()
    {
        using var dir = new TempDir();
        var tok = Tok(dir);
        var file = dir.File("alpaca.jsonl");
        File.WriteAllLines(file, [
            "{\"instruction\":\"Translate to French\",\"input\":\"cat\",\"output\":\"chat\"}",
            "{\"instruction\":\"Say hi\",\"input\":\"\",\"output\":\"hi\"}",
            "{\"instruction\":\"Say yo\",\"input\":null,\"output\":\"yo\"}",
        ]);
        var ex = TrainingData.Load(file, tok);
        Assert.Equal(3, ex.Count);
        Assert.Contains("chat", Trained(tok, ex[0]));
        Assert.DoesNotContain("French", Trained(tok, ex[0]));
        Assert.Contains("<|im_start|>user\nTranslate to French\n\ncat<|im_end|>", Context(tok, ex[0]));
        Assert.Contains("<|im_start|>user\nSay hi<|im_end|>", Context(tok, ex[1]));
        Assert.Contains("<|im_start|>user\nSay yo<|im_end|>", Context(tok, ex[2]));
    }

    [Fact]
    public void AlpacaWithoutAChatTemplateUsesTheAlpacaPrompt()
    {
        using var dir = new TempDir();
        var tok = Tok(dir, template: false);
        var file = dir.File("alpaca.jsonl");
        File.WriteAllText(file, "{\"instruction\":\"Translate to French\",\"input\":\"cat\",\"output\":\"chat\"}\n");
        var ex = Assert.Single(TrainingData.Load(file, tok));
        Assert.Equal(TrainingData.AlpacaPrompt("Translate to French", "cat"), Context(tok, ex));
        Assert.Contains("### Input:\ncat\n\n### Response:\n", TrainingData.AlpacaPrompt("Translate to French", "cat"));
        Assert.DoesNotContain("### Input", TrainingData.AlpacaPrompt("Say hi", ""));
        Assert.StartsWith("chat", Trained(tok, ex));
    }

    [Fact]
    public void ChatTemplateTextCanBeSuppliedForAModelWithoutOne()
    {
        using var dir = new TempDir();
        var tok = Tok(dir, template: false);
        var file = dir.File("chat.jsonl");
        File.WriteAllText(file, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n");
        var e = Assert.Throws<NoChatTemplateException>(() => TrainingData.Load(file, tok));
        Assert.Contains("chat template", e.Message);
        Assert.DoesNotContain("--", e.Message); // the library names no CLI flag; tune adds its own
        var ex = Assert.Single(TrainingData.Load(file, tok, SynthPreset.ChatMl));
        Assert.Contains("hello", Trained(tok, ex));
        var bad = Assert.Throws<OpenWeightsException>(() => TrainingData.Load(file, tok, "{% for %}"));
        Assert.Contains("chat template given cannot be used", bad.Message);
    }

    [Fact]
    public void AConversationLongerThanTheLimitIsRefusedNotRenderedForMinutes()
    {
        using var dir = new TempDir();
        var tok = Tok(dir);
        var file = dir.File("long.jsonl");
        string Conversation(int n) => "{\"messages\":[" + string.Join(",", Enumerable.Range(0, n).Select(i =>
            $"{{\"role\":\"{(i % 2 == 0 ? "user" : "assistant")}\",\"content\":\"turn {i}\"}}")) + "]}";
        File.WriteAllLines(file, [Conversation(4), Conversation(20_000)]);
        var e = Assert.Throws<TrainingDataException>(() => TrainingData.Load(file, tok));
        var p = Assert.Single(e.Problems);
        Assert.Equal(2, p.Line);
        Assert.Contains($"20000 messages; at most {TrainingData.MaxMessages}", p.Message);
        File.WriteAllLines(file, [Conversation(TrainingData.MaxMessages)]);
        Assert.Single(TrainingData.Load(file, tok));
    }

    [Fact]
    public void AJsonArrayFileIsReadWithLineNumbersForItsItems()
    {
        using var dir = new TempDir();
        var tok = Tok(dir);
        var file = dir.File("alpaca_data.json");
        File.WriteAllText(file, """
            [
              {"instruction": "Say hi", "input": "", "output": "hi"},
              {"instruction": "Say yo",
               "output": "yo"}
            ]
            """);
        Assert.Equal(2, TrainingData.Load(file, tok).Count);
        File.WriteAllText(file, """
            [
              {"instruction": "Say hi", "input": "", "output": "hi"},
              {"instruction": "Say yo"},
              {"instruction": "Say yo", "output": 5}
            ]
            """);
        var e = Assert.Throws<TrainingDataException>(() => TrainingData.Load(file, tok));
        Assert.Equal([3, 4], e.Problems.Select(p => p.Line));
        Assert.Contains("\"output\" must be a string, not a number", e.Message);
    }

    [Theory]
    [InlineData("one\ntwo\nthree\n", new[] { "one", "two", "three" })]
    [InlineData("\n\none\r\ntwo\n\n", new[] { "one", "two" })]
    [InlineData("a first\nparagraph\n\n\n\nsecond\n  \nthird\n", new[] { "a first\nparagraph", "second", "third" })]
    [InlineData("", new string[0])]
    public void PlainTextIsParagraphsWhenItHasBlankLinesElseLines(string text, string[] docs) =>
        Assert.Equal(docs, TrainingData.SplitText([.. text.Replace("\r\n", "\n").Split('\n')]));

    [Fact]
    public void APlainTextFileWithoutBlankLinesGivesOneExamplePerLine()
    {
        using var dir = new TempDir();
        var tok = Tok(dir);
        var file = dir.File("notes.txt");
        File.WriteAllText(file, "alpha beta\ngamma delta\nepsilon\n");
        var ex = TrainingData.Load(file, tok);
        Assert.Equal(3, ex.Count);
        Assert.Equal("gamma delta", tok.Decode([.. ex[1].Tokens.Where(t => t != tok.Bos && t != tok.Eos)]));
    }

    [Fact]
    public void BytesThatAreNotUtf8AreRefusedWithTheLineNumber()
    {
        using var dir = new TempDir();
        var tok = Tok(dir);
        var good = Encoding.UTF8.GetBytes("{\"prompt\":\"a\",\"completion\":\"b\"}\n");
        var bad = Encoding.UTF8.GetBytes("{\"prompt\":\"caf").Concat(new byte[] { 0xE9 }).Concat(Encoding.UTF8.GetBytes("\",\"completion\":\"b\"}\n")).ToArray();
        var file = dir.File("latin1.jsonl");
        File.WriteAllBytes(file, [.. good, .. good, .. bad, .. good]);
        var e = Assert.Throws<TrainingDataException>(() => TrainingData.Load(file, tok));
        var p = Assert.Single(e.Problems);
        Assert.Equal(3, p.Line);
        Assert.Equal("not valid UTF-8 (byte 0xE9 at byte 15 of the line)", p.Message);

        var text = dir.File("latin1.txt");
        File.WriteAllBytes(text, [.. Encoding.UTF8.GetBytes("fine\n"), 0x41, 0xFF, 0x0A, .. Encoding.UTF8.GetBytes("also fine\n")]);
        e = Assert.Throws<TrainingDataException>(() => TrainingData.Load(text, tok));
        Assert.Equal(2, Assert.Single(e.Problems).Line);

        var utf16 = dir.File("utf16.jsonl");
        File.WriteAllText(utf16, "{\"prompt\":\"a\",\"completion\":\"b\"}\n", Encoding.Unicode);
        Assert.Contains("UTF-16", Assert.Throws<OpenWeightsException>(() => TrainingData.Load(utf16, tok)).Message);

        var bom = dir.File("bom.jsonl");
        File.WriteAllText(bom, "{\"prompt\":\"a\",\"completion\":\"b\"}\n", new UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        Assert.Single(TrainingData.Load(bom, tok));
    }

    [Fact]
    public void EveryMalformedLineIsReportedWithWhatIsWrong()
    {
        using var dir = new TempDir();
        var tok = Tok(dir);
        var lines = new List<byte[]>
        {
            Encoding.UTF8.GetBytes("{\"prompt\":\"a\",\"completion\":\"b\"}"),                                   // 1 fine
            Encoding.UTF8.GetBytes("{\"prompt\":\"a\","),                                                        // 2 invalid JSON
            Encoding.UTF8.GetBytes("{\"prompt\":\"a\"}"),                                                        // 3 missing field
            Encoding.UTF8.GetBytes("{\"prompt\":1,\"completion\":\"b\"}"),                                       // 4 wrong type
            (byte[])[.. Encoding.UTF8.GetBytes("{\"text\":\""), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\"}")], // 5 not UTF-8
            Encoding.UTF8.GetBytes("{\"text\":\"\\ud800\"}"),                                                    // 6 lone surrogate
            Encoding.UTF8.GetBytes("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"),                    // 7 no assistant
            Encoding.UTF8.GetBytes("{\"messages\":[{\"role\":\"user\",\"content\":[1]}]}"),                      // 8 content type
            Encoding.UTF8.GetBytes("{\"foo\\u001b[31m\":1}"),                                                     // 9 unknown keys (escaped)
            Encoding.UTF8.GetBytes("[1,2]"),                                                                     // 10 not an object
            Encoding.UTF8.GetBytes("{\"instruction\":\"x\"}"),                                                   // 11 Alpaca without output
        };
        var file = dir.File("bad.jsonl");
        File.WriteAllBytes(file, [.. lines.SelectMany(l => l.Append((byte)'\n'))]);
        var e = Assert.Throws<TrainingDataException>(() => TrainingData.Load(file, tok));
        Assert.Equal(Enumerable.Range(2, 10), e.Problems.Select(p => p.Line));
        string M(int line) => e.Problems.Single(p => p.Line == line).Message;
        Assert.StartsWith("invalid JSON at column", M(2));
        Assert.Equal("has \"prompt\" but no \"completion\"", M(3));
        Assert.Equal("\"prompt\" must be a string, not a number", M(4));
        Assert.StartsWith("not valid UTF-8 (byte 0xC3", M(5));
        Assert.Contains("lone surrogate", M(6));
        Assert.Equal("conversation has no assistant message", M(7));
        Assert.Equal("\"messages[0].content\" must be a string, not an array", M(8));
        Assert.Contains("\"foo\\u001b[31m\"", M(9));
        Assert.DoesNotContain("\u001b", e.Message);
        Assert.Equal("expected a JSON object, found an array", M(10));
        Assert.Equal("has \"instruction\" but no \"output\"", M(11));
        Assert.StartsWith("bad.jsonl: 10 malformed lines, refusing to train: line 2: ", e.Message);
    }

    [Fact]
    public void TheMessageListsTwentyProblemsAndCountsTheRest()
    {
        var problems = Enumerable.Range(1, 25).Select(i => new DataProblem(i, "broken")).ToList();
        var e = new TrainingDataException("/data/x.jsonl", problems);
        Assert.Contains("line 20: broken; ... and 5 more", e.Message);
        Assert.DoesNotContain("line 21", e.Message);
        Assert.Equal(21, e.ListedProblems().Count());
        Assert.Equal("x.jsonl: 25 malformed lines, refusing to train", e.Summary);
        Assert.Equal("x.jsonl: 1 malformed line, refusing to train", new TrainingDataException("x.jsonl", [new DataProblem(3, "bad")]).Summary);
    }

    [Fact]
    public void InvalidUtf8PositionIsTheFirstBadByte()
    {
        Assert.Equal(-1, TrainingData.InvalidUtf8At("héllo"u8));
        Assert.Equal(2, TrainingData.InvalidUtf8At([0x61, 0x62, 0xFF, 0x63]));
        Assert.Equal(1, TrainingData.InvalidUtf8At([0x61, 0xE2, 0x82]));          // truncated sequence at the end
        Assert.Equal(0, TrainingData.InvalidUtf8At([0xED, 0xA0, 0x80]));          // an encoded surrogate
    }
}
