using System.Diagnostics;
using OpenWeights.Cli.Commands;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tests.Cli;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>`chat`: banner, /? /bye /stats, multi-line input, the line editor's history and Ctrl-C.</summary>
public class ChatCommandTests
{
    private static ConsoleKeyInfo Key(char c) => new(c, c is >= 'a' and <= 'z' ? (ConsoleKey)(c - 'a' + 'A') : 0, false, false, false);
    private static ConsoleKeyInfo Key(ConsoleKey k, bool ctrl = false) => new(k == ConsoleKey.Enter ? '\r' : '\0', k, false, false, ctrl);
    private static IEnumerable<ConsoleKeyInfo> Type(string s) => s.Select(Key);

    private static LineEditor Editor(IEnumerable<ConsoleKeyInfo> keys, StringWriter screen) => new(Keys(keys), screen);

    private static Func<ConsoleKeyInfo> Keys(IEnumerable<ConsoleKeyInfo> keys)
    {
        var e = keys.GetEnumerator();
        return () => e.MoveNext() ? e.Current : throw new InvalidOperationException("the test ran out of keys");
    }

    [Fact]
    public void ChatOverRedirectedStdinShowsBannerHelpStatsAndQuitsOnBye()
    {
        var (code, output, err) = RunCommandTests.RunWithStdin("/?\nhello\n/stats\n/bye\nnever sent\n",
            "chat", TinyModels.Qwen, "--temp", "0", "-n", "3", "--ctx", "256", "--threads", "1");
        Assert.True(code == 0, err);
        var lines = output.Split('\n');
        Assert.Equal($"openweights chat: {TinyModels.Qwen} (context 256 tokens)", lines[0]);
        Assert.StartsWith("/? for help, /bye to quit", lines[1]);
        Assert.Contains("/stats           tokens, speed and context use of the last reply", output);
        Assert.Matches(@"last reply: 3 tokens, [\d.]+ tok/s, time to first token [\d.]+ s, total [\d.]+ s; prompt \d+ tokens \([\d.]+ tok/s\); context \d+ of 256 tokens used \(\d+%\)", output);
        Assert.Equal(4, output.Split("> ").Length - 1); // four prompts: "never sent" after /bye is not read
    }

    [Fact]
    public void ChatRefusesAModelWithoutTemplateNamingTheWayOut()
    {
        var p = TestData.Require("models/stories260K.gguf");
        var (code, _, err) = RunCommandTests.RunWithStdin("hi\n", "chat", p);
        Assert.Equal(1, code);
        Assert.Contains("has no chat template", err);
        Assert.Contains("--chat-template FILE", err);
        Assert.Contains("--raw", err);
    }

    [Fact]
    public async Task ChatLoopJoinsTripleQuotedLinesIntoOneMessage()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var session = new InferenceSession(m, 256, 1);
        var loop = new ChatLoop(session, new ChatFormatter(Tokenizer.FromGguf(m.Source)), new GenerationOptions { MaxTokens = 2, Sampling = SamplingOptions.Greedy }, null);
        var output = new StringWriter();
        await loop.RunAsync(new StringReader("\"\"\"first line\n  second line\n\nlast\"\"\"\n\"\"\"one line\"\"\"\n/exit\n"), output);
        var users = loop.History.Where(t => t.Role == "user").Select(t => t.Content).ToList();
        Assert.Equal(["first line\n  second line\n\nlast", "one line"], users);
        Assert.Equal(3, output.ToString().Split("... ").Length - 1); // continuation prompts for the three lines after the first
    }

    [Fact]
    public async Task StatsReportTheLastReplyAndTheContextUsed()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var session = new InferenceSession(m, 256, 1);
        var loop = new ChatLoop(session, new ChatFormatter(Tokenizer.FromGguf(m.Source)), new GenerationOptions { MaxTokens = 5, IgnoreEos = true, Sampling = SamplingOptions.Greedy }, null);
        var output = new StringWriter();
        await loop.RunAsync(new StringReader("/stats\nhello\n"), output);
        Assert.Contains("(no reply yet)", output.ToString());
        var s = loop.LastReply!;
        Assert.Equal(5, s.GeneratedTokens);
        Assert.Equal(session.Tokens.Count, s.ContextUsed);
        Assert.Equal(256, s.ContextSize);
        Assert.True(s.TimeToFirstToken <= s.Duration);
        Assert.True(s.DecodeTokensPerSecond > 0);
    }

    [Fact]
    public async Task ChatLoopReportsAFullContextDuringAReply()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var session = new InferenceSession(m, 40, 1);
        var loop = new ChatLoop(session, new ChatFormatter(Tokenizer.FromGguf(m.Source)), new GenerationOptions { MaxTokens = int.MaxValue, IgnoreEos = true, Sampling = SamplingOptions.Greedy }, null);
        var output = new StringWriter();
        await loop.RunAsync(new StringReader("hello\n"), output);
        Assert.Contains("(stopped: context full (40 tokens); /reset to start over)", output.ToString());
    }

    [Fact]
    public async Task CtrlCAtAnEmptyPromptSaysByeAndEndsTheLoop()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var session = new InferenceSession(m, 256, 1);
        var loop = new ChatLoop(session, new ChatFormatter(Tokenizer.FromGguf(m.Source)), new GenerationOptions { MaxTokens = 2, Sampling = SamplingOptions.Greedy }, null);
        var screen = new StringWriter();
        var editor = Editor([Key(ConsoleKey.C, ctrl: true)], screen);
        await loop.RunAsync(editor, screen);
        Assert.EndsWith("> ^C\r\nbye" + Environment.NewLine, screen.ToString());
        Assert.Empty(loop.History);
    }

    [Fact]
    public void LineEditorRecallsEarlierLinesWithUpAndDown()
    {
        var screen = new StringWriter();
        var editor = Editor([
            .. Type("first"), Key(ConsoleKey.Enter),
            .. Type("second"), Key(ConsoleKey.Enter),
            Key(ConsoleKey.UpArrow), Key(ConsoleKey.UpArrow), Key(ConsoleKey.Enter),      // "first" again
            .. Type("dra"), Key(ConsoleKey.UpArrow), Key(ConsoleKey.DownArrow), Key('f'), Key('t'), Key(ConsoleKey.Enter), // the draft comes back
        ], screen);
        Assert.Equal("first", editor.ReadLine("> "));
        Assert.Equal("second", editor.ReadLine("> "));
        Assert.Equal("first", editor.ReadLine("> "));
        Assert.Equal("draft", editor.ReadLine("> "));
        Assert.Equal(["first", "second", "first", "draft"], editor.History);
    }

    [Fact]
    public void LineEditorWrapsLongLinesAtTheTerminalWidth()
    {
        var screen = new StringWriter();
        var editor = new LineEditor(Keys([.. Type("abcdefghijklmnopqrstuvwxy"), Key(ConsoleKey.Home), Key('X'), Key(ConsoleKey.Enter)]), screen, () => 10);
        Assert.Equal("Xabcdefghijklmnopqrstuvwxy", editor.ReadLine("> "));
        string o = screen.ToString();
        Assert.Contains("\u001b[2A\r> abcdefghijklmnopqrstuvwxy\u001b[J\u001b[2A\r\u001b[2C", o); // Home: up from the third row, redraw, back to the start
        Assert.Contains("\r> Xabcdefghijklmnopqrstuvwxy\u001b[J\u001b[2A\r\u001b[3C", o); // X: redrawn from the prompt's row, cursor after X
        Assert.EndsWith("\u001b[2B\r\n", o); // Enter moves below the last row first
    }

    [Fact]
    public void LineEditorEditsInsideTheLine()
    {
        var screen = new StringWriter();
        var editor = Editor([
            .. Type("helo"), Key(ConsoleKey.LeftArrow), Key('l'), Key(ConsoleKey.End), Key('!'), Key(ConsoleKey.Home), Key(ConsoleKey.Delete), Key('H'),
            Key(ConsoleKey.Enter),
            .. Type("two words"), Key(ConsoleKey.W, ctrl: true), Key(ConsoleKey.Backspace), Key(ConsoleKey.Enter),
            .. Type("gone"), Key(ConsoleKey.C, ctrl: true), .. Type("kept"), Key(ConsoleKey.Enter), // Ctrl-C with text clears the line
            Key(ConsoleKey.D, ctrl: true),
        ], screen);
        Assert.Equal("Hello!", editor.ReadLine("> "));
        Assert.Equal("two", editor.ReadLine("> "));
        Assert.Equal("kept", editor.ReadLine("> "));
        Assert.Null(editor.ReadLine("> ")); // Ctrl-D at an empty line: end of input
        Assert.Contains("\u001b[K", screen.ToString()); // lines are redrawn in place
    }

    /// <summary>
    /// The real process in a pseudo-terminal (tmux, 40 columns): the banner, a reply to a line longer than a row, Up recalls
    /// it (wrapped over rows), editing at its start redraws it whole, Ctrl-C at an empty prompt says bye and exits 0.
    /// </summary>
    [Fact]
    public void ChatInATerminalRecallsHistoryWithUpAndQuitsOnCtrlC()
    {
        if (!OnPath("tmux")) Assert.Skip("tmux is not installed: this test drives chat in a pseudo-terminal through tmux");
        string socket = "ow-chat-" + Guid.NewGuid().ToString("N")[..10];
        string cli = typeof(OpenWeights.Cli.Cli).Assembly.Location;
        string command = $"'{RunCommandTests.DotnetHost()}' '{cli}' chat '{TinyModels.Qwen}' --temp 0 -n 3 --ctx 256 --threads 1; echo exit=$?; sleep 30";
        const string text = "hello there, this question is longer than one row of forty columns";
        Tmux(socket, "new-session", "-d", "-x", "40", "-y", "30", command);
        try
        {
            WaitFor(socket, s => s.Contains("/? for help") && s.TrimEnd().EndsWith('>'), "the banner and a prompt");
            Tmux(socket, "send-keys", "-l", text);
            WaitFor(socket, s => s.TrimEnd().EndsWith("> " + text), "the long line typed");
            Tmux(socket, "send-keys", "Enter");
            WaitFor(socket, s => s.Split('\n').Count(l => l.StartsWith('>')) >= 2 && s.TrimEnd().EndsWith('>'), "a reply and the next prompt");
            Tmux(socket, "send-keys", "Up");
            WaitFor(socket, s => s.TrimEnd().EndsWith("> " + text), "Up to recall the line");
            Tmux(socket, "send-keys", "Home");
            Tmux(socket, "send-keys", "-l", "X");
            WaitFor(socket, s => s.TrimEnd().EndsWith("> X" + text), "an insertion at the start of the wrapped line");
            Tmux(socket, "send-keys", "End");
            Tmux(socket, "send-keys", "C-u");
            WaitFor(socket, s => s.TrimEnd().EndsWith('>'), "Ctrl-U to clear it");
            Tmux(socket, "send-keys", "C-c");
            var screen = WaitFor(socket, s => s.Contains("exit="), "Ctrl-C to end the chat");
            Assert.Contains("bye", screen);
            Assert.Contains("exit=0", screen);
        }
        finally { TmuxQuiet(socket, "kill-server"); }
    }

    private static string WaitFor(string socket, Func<string, bool> done, string what)
    {
        var sw = Stopwatch.StartNew();
        string screen = "";
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            screen = Tmux(socket, "capture-pane", "-p", "-J"); // -J: rows of a wrapped line joined
            if (done(screen)) return screen;
            Thread.Sleep(50);
        }
        Assert.Fail($"timed out waiting for {what}; the screen:\n{screen}");
        return screen;
    }

    private static string Tmux(string socket, params string[] args)
    {
        var psi = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-L"); psi.ArgumentList.Add(socket);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string o = p.StandardOutput.ReadToEnd();
        string e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"tmux {string.Join(' ', args)}: {e}");
        return o;
    }

    private static void TmuxQuiet(string socket, params string[] args)
    {
        try { Tmux(socket, args); } catch (Exception) { }
    }

    private static bool OnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, exe)));
}
