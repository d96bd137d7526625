using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Playwright;
using OpenWeights.Formats.Gguf;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>
/// The chat page at / in a real browser: Debian's headless Chromium driven by Microsoft.Playwright (its ExecutablePath
/// pointing at /usr/bin/chromium; no browser download), against the server on a real Kestrel port. A reply streams in
/// (seen growing before it ends), the stop button aborts one mid-way (the request is cancelled, the server frees the slot,
/// the page takes the next message), conversations survive a reload, the API key is asked for and kept, the reasoning is
/// folded and Markdown rendered without letting any HTML through. Every request the page makes goes to the server's own
/// origin, and the browser reports no Content-Security-Policy violation. Screenshots are kept under the test output folder
/// (TestResults/chat-page/, printed in the test output).
/// </summary>
public class ChatPageBrowserTests
{
    private const string Chromium = "/usr/bin/chromium";
    private const float Timeout = 90_000; // ms: the machine is shared and slow

    private static readonly Lazy<string> licensed = new(WriteLicensedModel);

    /// <summary>tiny-qwen2 (random weights, ChatML template) with a name and licence in its metadata, as real files have.</summary>
    private static string WriteLicensedModel()
    {
        string src = TinyModels.Qwen;
        string dst = Path.Combine(Path.GetDirectoryName(src)!, "tiny-qwen2-licensed.gguf");
        string tmp = dst + "." + Guid.NewGuid().ToString("N")[..8];
        using (var f = GgufFile.Open(src))
            GgufWriter.CopyOf(f).Set("general.name", "Tiny Qwen2").Set("general.license", "apache-2.0").Write(tmp);
        File.Move(tmp, dst, overwrite: true);
        return dst;
    }

    [Fact]
    public async Task A_reply_streams_in_stops_mid_way_and_the_conversations_survive_a_reload()
    {
        await using var browser = await PageSession.StartAsync();
        var log = new ChatLog();
        string next = ""; // the next reply
        const string Story = "Once upon a time a tiny model told a story, one token at a time, and the page showed every word as it came.";
        string endless = string.Concat(Enumerable.Repeat("more words ", 1500));
        await using var server = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = licensed.Value, ModelId = "page-model", Parallel = 2, ContextSize = 2048, Threads = 2,
            AccessLog = log, AccessLogFormat = AccessLogFormat.Json,
            // each reply is forced (random weights may end a reply at once), through response_format, which the route adds
            JsonConstraintFactory = (tok, _) => new ForcedTokens(tok.Encode(next, addSpecial: false, parseSpecial: false)),
        });
        var page = browser.Page;
        await ForceRepliesAsync(page);
        var first = await page.GotoAsync(server.BaseUri.ToString());
        Assert.Equal(200, first!.Status);
        Assert.Equal(ChatPage.ContentSecurityPolicy, first.Headers["content-security-policy"]);
        await Expect(page.Locator("#model-name")).ToHaveTextAsync("page-model (Tiny Qwen2)");
        await Expect(page.Locator("#model-license")).ToHaveTextAsync("apache-2.0");
        await Expect(page.Locator("#model-context")).ToHaveTextAsync("2048 tokens");
        await page.Locator("#settings summary").ClickAsync(); // the settings are folded at first

        // a slow network (the browser's own throttling): the reply arrives over seconds, as from a big model
        await browser.ThrottleAsync(bytesPerSecond: 3000);
        // every change of the reply's text, with the reply's state at that moment
        await page.EvaluateAsync("""
            () => {
              window.__seen = [];
              new MutationObserver(() => {
                const a = [...document.querySelectorAll('#messages article[data-role="assistant"]')].pop();
                if (a) window.__seen.push({ state: a.dataset.state, length: a.querySelector('.content').textContent.length });
              }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true, attributes: true });
            }
            """);
        next = Story;
        await page.Locator("#max-tokens").FillAsync("400");
        await page.Locator("#prompt").FillAsync("Tell me a story");
        await page.Locator("#send").ClickAsync();
        var reply = page.Locator("#messages article[data-role=assistant]").Last;
        await Expect(reply).ToHaveAttributeAsync("data-state", "done");
        string firstReply = await reply.Locator(".content").TextContentAsync() ?? "";
        Assert.Equal(Story, firstReply);
        Assert.Matches(@"\b\d+ tokens", await reply.Locator(".note").TextContentAsync());
        var seen = await page.EvaluateAsync<Seen[]>("() => window.__seen");
        // partial text shown while the reply was still streaming, then more of it
        Assert.Contains(seen, s => s.State == "streaming" && s.Length > 0 && s.Length < firstReply.Length);
        Assert.True(seen.Where(s => s.State == "streaming").Select(s => s.Length).Distinct().Count() >= 3,
            $"the reply did not grow in steps: {string.Join(", ", seen.Select(s => s.State + ":" + s.Length))}");

        // a long reply, stopped once it has begun
        next = endless;
        int endlessTokens = server.ModelHost.Tokenizer.Encode(endless, addSpecial: false).Length;
        await page.Locator("#max-tokens").FillAsync("4000");
        await page.Locator("#prompt").FillAsync("Tell me a very long story");
        await page.Locator("#send").ClickAsync();
        var second = page.Locator("#messages article[data-role=assistant]").Last;
        await Expect(page.Locator("#stop")).ToBeVisibleAsync();
        await Expect(page.Locator("#send")).ToBeDisabledAsync();
        await page.WaitForFunctionAsync("() => [...document.querySelectorAll('#messages article[data-role=\"assistant\"]')].pop().querySelector('.content').textContent.length > 0",
            null, new() { Timeout = Timeout });
        await page.Locator("#stop").ClickAsync();
        await Expect(second).ToHaveAttributeAsync("data-state", "stopped");
        await Expect(second.Locator(".note")).ToHaveTextAsync("stopped");
        // the browser aborted the request (its requestfailed event reaches us a little after the page's state changes)
        Assert.True(SpinWait.SpinUntil(() => browser.Failed.Any(f => f.Url.EndsWith("/v1/chat/completions") && f.Failure.Contains("ABORTED", StringComparison.OrdinalIgnoreCase)), 10_000),
            $"no aborted chat request was seen: {string.Join("; ", browser.Failed)}");
        // the server saw the client go and stopped generating: the request ended before the reply's end
        Assert.True(SpinWait.SpinUntil(() => log.Chats.Count == 2, 30_000), "the stopped request never ended on the server");
        // (a job cancelled between tokens may be counted as 0; never as the whole reply)
        Assert.InRange(log.Chats[1]["completion_tokens"]!.GetValue<int>(), 0, endlessTokens - 1);
        Assert.Equal(0, server.ModelHost.Scheduler.ActiveSlots);
        string stopped = await second.Locator(".content").TextContentAsync() ?? "";
        Assert.StartsWith("more", stopped); // stopped as soon as text appeared: a word or more
        Assert.True(stopped.Length < endless.Trim().Length, "the whole reply arrived before the stop");
        await Task.Delay(500);
        Assert.Equal(stopped, await second.Locator(".content").TextContentAsync()); // nothing more arrives
        await Expect(page.Locator("#stop")).ToBeHiddenAsync();
        await Expect(page.Locator("#send")).ToBeEnabledAsync();

        // the page takes the next message
        await browser.ThrottleAsync(bytesPerSecond: -1);
        next = "The end.";
        await page.Locator("#max-tokens").FillAsync("8");
        await page.Locator("#prompt").FillAsync("And a short one");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.Locator("#messages article[data-role=assistant]").Nth(2)).ToHaveAttributeAsync("data-state", "done");
        await Expect(page.Locator("#messages article[data-role=assistant] .content").Nth(2)).ToHaveTextAsync("The end.");
        await browser.ScreenshotAsync("streamed-and-stopped");

        // a second conversation, then a reload: both are listed, the first holds its three exchanges as they were
        await page.Locator("#new-chat").ClickAsync();
        await Expect(page.Locator("#messages article")).ToHaveCountAsync(0);
        next = "A second reply.";
        await page.Locator("#prompt").FillAsync("Second conversation");
        await page.Locator("#send").ClickAsync();
        await Expect(page.Locator("#messages article[data-role=assistant]").Last).ToHaveAttributeAsync("data-state", "done");
        await page.ReloadAsync();
        await Expect(page.Locator("#model-name")).ToHaveTextAsync("page-model (Tiny Qwen2)");
        await Expect(page.Locator("#conversations .conversation")).ToHaveTextAsync(["Second conversation", "Tell me a story"]);
        await Expect(page.Locator("#max-tokens")).ToHaveValueAsync("8"); // the settings are kept too
        await page.Locator("#conversations .conversation", new() { HasText = "Tell me a story" }).ClickAsync();
        await Expect(page.Locator("#messages article[data-role=user] .content"))
            .ToHaveTextAsync(["Tell me a story", "Tell me a very long story", "And a short one"]);
        var replies = page.Locator("#messages article[data-role=assistant]");
        await Expect(replies).ToHaveCountAsync(3);
        Assert.Equal(firstReply, await replies.Nth(0).Locator(".content").TextContentAsync());
        Assert.Equal("stopped", await replies.Nth(1).GetAttributeAsync("data-state"));
        Assert.Equal(stopped, await replies.Nth(1).Locator(".content").TextContentAsync());

        // deleting a conversation lasts
        await page.Locator("#conversations li", new() { HasText = "Second conversation" }).Locator(".delete").ClickAsync();
        await page.ReloadAsync();
        await Expect(page.Locator("#conversations .conversation")).ToHaveTextAsync(["Tell me a story"]);
        await browser.ScreenshotAsync("after-reload");

        browser.AssertOnlyOwnOrigin(server.BaseUri, "/chat/chat.js", "/chat/markdown.js", "/chat/chat.css", "/v1/models", "/v1/chat/completions");
    }

    [Fact]
    public async Task The_page_asks_for_the_API_key_keeps_it_and_sends_it()
    {
        const string key = "page-test-key";
        await using var browser = await PageSession.StartAsync();
        await using var server = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = licensed.Value, ModelId = "page-model", Parallel = 1, ContextSize = 1024, Threads = 2, ApiKey = key,
            JsonConstraintFactory = (tok, _) => new ForcedTokens(tok.Encode("Hello, key holder.", addSpecial: false, parseSpecial: false)),
        });
        var page = browser.Page;
        await ForceRepliesAsync(page);
        var first = await page.GotoAsync(server.BaseUri.ToString()); // the page and its files need no key
        Assert.Equal(200, first!.Status);
        await Expect(page.Locator("#key-panel")).ToBeVisibleAsync();
        await Expect(page.Locator("#model-name")).ToHaveTextAsync("(API key needed)");
        Assert.All(browser.Responses.Where(r => r.Url.Contains("/chat/")), r => Assert.Equal(200, r.Status));

        await page.Locator("#key-input").FillAsync("wrong-key");
        await page.Locator("#key-input").PressAsync("Enter");
        await Expect(page.Locator("#key-why")).ToContainTextAsync("refused");
        await page.Locator("#key-input").FillAsync(key);
        await page.Locator("#key-panel button[type=submit]").ClickAsync();
        await Expect(page.Locator("#model-name")).ToHaveTextAsync("page-model (Tiny Qwen2)");
        await Expect(page.Locator("#key-panel")).ToBeHiddenAsync();

        await page.Locator("#settings summary").ClickAsync();
        await page.Locator("#max-tokens").FillAsync("40");
        await page.Locator("#prompt").FillAsync("Hello with a key");
        await page.Locator("#send").ClickAsync();
        await Expect(page.Locator("#messages article[data-role=assistant]").Last).ToHaveAttributeAsync("data-state", "done");
        await Expect(page.Locator("#messages article[data-role=assistant] .content")).ToHaveTextAsync("Hello, key holder.");
        var chat = browser.Requests.Last(r => r.Url.EndsWith("/v1/chat/completions"));
        Assert.Equal("Bearer " + key, await chat.HeaderValueAsync("authorization"));

        // a reload keeps the key: no question, the model and the conversation are there
        await page.ReloadAsync();
        await Expect(page.Locator("#model-name")).ToHaveTextAsync("page-model (Tiny Qwen2)");
        await Expect(page.Locator("#key-panel")).ToBeHiddenAsync();
        await Expect(page.Locator("#messages article[data-role=user] .content")).ToHaveTextAsync(["Hello with a key"]);
        await Expect(page.Locator("#messages article[data-role=assistant]")).ToHaveAttributeAsync("data-state", "done");
        await browser.ScreenshotAsync("api-key");

        // forgetting the key asks for it again
        await page.Locator("#settings summary").ClickAsync();
        await page.Locator("#forget-key").ClickAsync();
        await Expect(page.Locator("#model-name")).ToHaveTextAsync("(API key needed)");
        await Expect(page.Locator("#key-panel")).ToBeVisibleAsync();
        browser.AssertOnlyOwnOrigin(server.BaseUri, "/v1/models", "/v1/chat/completions");
    }

    private const string Thinking = "The user wants **Markdown**. I will show it.";
    private const string Answer = """
        # Result

        Here is **bold**, *italic* and `inline code`; see [the docs](https://example.org/docs) or [this](javascript:alert(1)).

        1. first
        2. second
           - nested

        ```python
        print("<b>hi</b>")
        ```

        <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">
        """;

    [Fact]
    public async Task The_reasoning_is_folded_and_Markdown_is_rendered_without_any_HTML_getting_through()
    {
        string model = ThinkTinyModel.Path; // tiny-qwen2 as a DeepSeek-R1 distill (skips without ../shared/testdata)
        await using var browser = await PageSession.StartAsync();
        await using var server = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = model, Parallel = 1, ContextSize = 2048, Threads = 2,
            // the reply is forced through the constrained-decoding hook of response_format, which the route below adds
            JsonConstraintFactory = (tok, _) => new ForcedTokens(tok.Encode(Thinking + "\n</think>\n\n" + Answer, addSpecial: false, parseSpecial: true)),
        });
        var page = browser.Page;
        await ForceRepliesAsync(page);
        await page.GotoAsync(server.BaseUri.ToString());
        await Expect(page.Locator("#model-name")).ToHaveTextAsync(Path.GetFileNameWithoutExtension(model) + " (synthetic tiny-qwen2)"); // id (general.name)
        await Expect(page.Locator("#model-license")).ToHaveTextAsync("not stated in the model file");
        await page.Locator("#settings summary").ClickAsync();
        await page.Locator("#max-tokens").FillAsync("400");
        await page.Locator("#prompt").FillAsync("Show me some Markdown");
        await page.Locator("#send").ClickAsync();
        var reply = page.Locator("#messages article[data-role=assistant]").Last;
        await Expect(reply).ToHaveAttributeAsync("data-state", "done");

        // the reasoning: folded, rendered, apart from the answer
        var reasoning = reply.Locator("details.reasoning");
        await Expect(reasoning).ToBeVisibleAsync();
        Assert.Null(await reasoning.GetAttributeAsync("open"));
        await Expect(reasoning.Locator("strong")).ToHaveTextAsync("Markdown");
        await reasoning.Locator("summary").ClickAsync();
        await Expect(reasoning.Locator(".reasoning-text")).ToHaveTextAsync("The user wants Markdown. I will show it.");
        var content = reply.Locator(".content");
        await Expect(content).Not.ToContainTextAsync("The user wants");

        await Expect(content.Locator("h1")).ToHaveTextAsync("Result");
        await Expect(content.Locator("p strong")).ToHaveTextAsync("bold");
        await Expect(content.Locator("p em")).ToHaveTextAsync("italic");
        await Expect(content.Locator("p > code")).ToHaveTextAsync("inline code");
        await Expect(content.Locator("ol > li")).ToHaveCountAsync(2);
        await Expect(content.Locator("ol > li").Nth(1).Locator("ul > li")).ToHaveTextAsync("nested");
        await Expect(content.Locator("pre code.language-python")).ToHaveTextAsync("print(\"<b>hi</b>\")");
        var link = content.Locator("a");
        await Expect(link).ToHaveCountAsync(1); // the javascript: one is text
        await Expect(link).ToHaveAttributeAsync("href", "https://example.org/docs");
        await Expect(link).ToHaveAttributeAsync("rel", "noopener noreferrer");
        await Expect(content).ToContainTextAsync("<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">");
        Assert.Equal(0, await page.Locator("#messages script, #messages img, #messages b").CountAsync());
        Assert.True(await page.EvaluateAsync<bool>("() => window.__pwned === undefined"));
        await browser.ScreenshotAsync("markdown-and-reasoning");

        // the renderer itself on hostile and unfinished text: the HTML it builds, exactly
        foreach (var (markdown, html) in RendererCases)
            Assert.Equal(html, await page.EvaluateAsync<string>(
                "md => { const d = document.createElement('div'); d.append(OwMarkdown.render(md)); return d.innerHTML; }", markdown));
        browser.AssertOnlyOwnOrigin(server.BaseUri, "/v1/chat/completions");
    }

    private static readonly (string Markdown, string Html)[] RendererCases =
    [
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        ("a <img src=x onerror=alert(1)> b", "<p>a &lt;img src=x onerror=alert(1)&gt; b</p>"),
        ("[x](javascript:alert) [y](data:text/html,hi)", "<p>x y</p>"),
        ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"), // parentheses in the address: no link at all
        ("[**a**](https://h.test/p?q=1&r=2)", "<p><a href=\"https://h.test/p?q=1&amp;r=2\" rel=\"noopener noreferrer\" target=\"_blank\"><strong>a</strong></a></p>"),
        ("`<b>` and \\*not italic\\*", "<p><code>&lt;b&gt;</code> and *not italic*</p>"),
        ("line one\nline two", "<p>line one<br>line two</p>"),
        ("## Title ##\n- a\n- b", "<h2>Title</h2><ul><li>a</li><li>b</li></ul>"),
        ("3. c\n4. d", "<ol start=\"3\"><li>c</li><li>d</li></ol>"),
        ("> quoted *text*", "<blockquote><p>quoted <em>text</em></p></blockquote>"),
        ("snake_case_name and _it_", "<p>snake_case_name and <em>it</em></p>"),
    ];

    [Fact]
    public async Task An_unfinished_code_fence_renders_as_code_while_it_streams()
    {
        await using var browser = await PageSession.StartAsync();
        await using var server = await KestrelServer.StartAsync(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 256, Threads = 1 });
        await browser.Page.GotoAsync(server.BaseUri.ToString());
        string html = await browser.Page.EvaluateAsync<string>(
            "md => { const d = document.createElement('div'); d.append(OwMarkdown.render(md)); return d.querySelector('pre').outerHTML; }",
            "Code:\n```js\nlet a = '<i>';\n");
        Assert.Equal("<pre><code class=\"language-js\">let a = '&lt;i&gt;';\n</code></pre>", html);
    }

    /// <summary>
    /// Adds response_format json_object to the page's chat requests on their way (they still go to the server), so that
    /// the server's constrained-decoding hook forces the reply the test chose.
    /// </summary>
    private static Task ForceRepliesAsync(IPage page) => page.RouteAsync("**/v1/chat/completions", async route =>
    {
        var body = JsonNode.Parse(route.Request.PostData!)!;
        body["response_format"] = new JsonObject { ["type"] = "json_object" };
        await route.ContinueAsync(new() { PostData = Encoding.UTF8.GetBytes(body.ToJsonString()) });
    });

    private static ILocatorAssertions Expect(ILocator l) => Assertions.Expect(l);

    private sealed class Seen
    {
        public string State { get; set; } = "";
        public int Length { get; set; }
    }

    /// <summary>The access log's lines (JSON) of chat completions, in the order they ended.</summary>
    private sealed class ChatLog : TextWriter
    {
        private readonly List<JsonNode> chats = [];
        public override Encoding Encoding => Encoding.UTF8;
        public IReadOnlyList<JsonNode> Chats { get { lock (chats) return [.. chats]; } }
        public override void WriteLine(string? value)
        {
            var line = JsonNode.Parse(value ?? "{}")!;
            if (line["path"]?.GetValue<string>() == "/v1/chat/completions") lock (chats) chats.Add(line);
        }
        public override void Write(char value) { }
    }

    /// <summary>One browser, context and page, with every request, failure, response and console error recorded.</summary>
    private sealed class PageSession : IAsyncDisposable
    {
        private readonly IPlaywright playwright;
        private readonly IBrowser browser;
        private readonly List<IRequest> requests = [];
        private readonly List<(string Url, string Failure)> failed = [];
        private readonly List<IResponse> responses = [];
        private readonly List<string> consoleErrors = [];
        private ICDPSession? cdp;
        public IPage Page { get; }

        private PageSession(IPlaywright playwright, IBrowser browser, IPage page)
        {
            this.playwright = playwright;
            this.browser = browser;
            Page = page;
        }

        public IReadOnlyList<IRequest> Requests { get { lock (requests) return [.. requests]; } }
        public IReadOnlyList<(string Url, string Failure)> Failed { get { lock (failed) return [.. failed]; } }
        public IReadOnlyList<IResponse> Responses { get { lock (responses) return [.. responses]; } }

        public static async Task<PageSession> StartAsync()
        {
            Assert.SkipUnless(File.Exists(Chromium), $"Debian's chromium is not installed at {Chromium} (apt-get install chromium; .ci/run installs it): the chat page's browser tests need it");
            Assertions.SetDefaultExpectTimeout(Timeout);
            var playwright = await Playwright.CreateAsync();
            try
            {
                var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
                var context = await browser.NewContextAsync(new() { ColorScheme = ColorScheme.Light, ViewportSize = new() { Width = 1100, Height = 800 } });
                context.SetDefaultTimeout(Timeout);
                var page = await context.NewPageAsync();
                var s = new PageSession(playwright, browser, page);
                context.Request += (_, r) => { lock (s.requests) s.requests.Add(r); };
                context.RequestFailed += (_, r) => { lock (s.failed) s.failed.Add((r.Url, r.Failure ?? "")); };
                context.Response += (_, r) => { lock (s.responses) s.responses.Add(r); };
                page.Console += (_, m) => { if (m.Type == "error") lock (s.consoleErrors) s.consoleErrors.Add(m.Text); };
                page.PageError += (_, e) => { lock (s.consoleErrors) s.consoleErrors.Add("page error: " + e); };
                return s;
            }
            catch { playwright.Dispose(); throw; }
        }

        /// <summary>The browser's own network throttling (download bytes per second; -1: none).</summary>
        public async Task ThrottleAsync(int bytesPerSecond)
        {
            cdp ??= await Page.Context.NewCDPSessionAsync(Page);
            await cdp.SendAsync("Network.enable");
            await cdp.SendAsync("Network.emulateNetworkConditions", new Dictionary<string, object>
            {
                ["offline"] = false, ["latency"] = 0, ["downloadThroughput"] = bytesPerSecond, ["uploadThroughput"] = -1,
            });
        }

        public async Task ScreenshotAsync(string name)
        {
            string dir = Path.Combine(AppContext.BaseDirectory, "TestResults", "chat-page");
            Directory.CreateDirectory(dir);
            string path = Path.Combine(dir, name + ".png");
            await Page.ScreenshotAsync(new() { Path = path, FullPage = true });
            TestContext.Current.TestOutputHelper?.WriteLine($"screenshot: {path}");
        }

        /// <summary>
        /// Every request went to the server's origin (no CDN, no other host), the named paths among them; no CSP or Trusted
        /// Types violation and no script error was reported (a refused key's 401 is the only failed load allowed).
        /// </summary>
        public void AssertOnlyOwnOrigin(Uri server, params string[] paths)
        {
            string origin = server.GetLeftPart(UriPartial.Authority);
            var urls = Requests.Select(r => r.Url).ToList();
            Assert.NotEmpty(urls);
            Assert.All(urls, u => Assert.True(u.StartsWith(origin + "/", StringComparison.Ordinal), $"the page loaded {u}, not from {origin}"));
            foreach (string p in paths) Assert.Contains(urls, u => new Uri(u).AbsolutePath == p);
            List<string> errors;
            lock (consoleErrors) errors = [.. consoleErrors];
            Assert.All(errors, e => Assert.True(e.StartsWith("Failed to load resource: the server responded with a status of 401", StringComparison.Ordinal), e));
        }

        public async ValueTask DisposeAsync()
        {
            await browser.DisposeAsync();
            playwright.Dispose();
        }
    }
}
