using System.Text;

namespace OpenWeights.Inference.ChatTemplates;

/// <summary>How a template is lexed and run. The defaults are Hugging Face transformers' chat-template environment.</summary>
public sealed record JinjaTemplateOptions
{
    /// <summary>Remove the first newline after a block tag (HF: true).</summary>
    public bool TrimBlocks { get; init; } = true;
    /// <summary>Strip spaces and tabs before a block tag at the start of a line (HF: true).</summary>
    public bool LstripBlocks { get; init; } = true;
    /// <summary>Keep a single trailing newline of the template source (HF: false).</summary>
    public bool KeepTrailingNewline { get; init; }
    /// <summary>
    /// Jinja's ImmutableSandboxedEnvironment (HF): methods that mutate lists and dicts (append, pop, update...)
    /// raise "access to attribute ... is unsafe". Set false to allow them.
    /// </summary>
    public bool Sandboxed { get; init; } = true;
    /// <summary>The clock behind <c>strftime_now</c> (local time by default).</summary>
    public Func<DateTime> Now { get; init; } = () => DateTime.Now;
    /// <summary>Extra globals visible to every render (values are converted like the render context).</summary>
    public IReadOnlyDictionary<string, object?>? Globals { get; init; }
    /// <summary>Step, output and list-size budgets of each render (the template is untrusted code).</summary>
    public TemplateLimits Limits { get; init; } = TemplateLimits.Default;

    public static JinjaTemplateOptions HuggingFace { get; } = new();
}

/// <summary>
/// A parsed Jinja2 template. <c>JinjaTemplate.Parse(source).Render(context)</c> renders it with Jinja2 semantics
/// (Python truthiness, str() of values, Undefined) and HF chat-template settings.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Node> body;
    private readonly JinjaTemplateOptions options;

    private JinjaTemplate(List<Node> body, JinjaTemplateOptions options)
    {
        this.body = body;
        this.options = options;
    }

    /// <summary>Parses a template; throws <see cref="TemplateException"/> naming the line on a syntax error.</summary>
    public static JinjaTemplate Parse(string source, JinjaTemplateOptions? options = null)
    {
        options ??= JinjaTemplateOptions.HuggingFace;
        var toks = JinjaLexer.Tokenize(source, options.TrimBlocks, options.LstripBlocks, options.KeepTrailingNewline);
        return new JinjaTemplate(JinjaParser.Parse(toks), options);
    }

    /// <summary>
    /// Renders with the given variables. Values may be plain .NET values (dictionaries, lists, strings, numbers,
    /// bools, null), <see cref="System.Text.Json.JsonElement"/> or <see cref="System.Text.Json.Nodes.JsonNode"/>;
    /// they are copied, so the template never changes the caller's objects.
    /// </summary>
    public string Render(IDictionary<string, object?> context) => Render(context, CancellationToken.None);

    /// <summary>
    /// Renders with the given variables, within <see cref="JinjaTemplateOptions.Limits"/> (past one it throws
    /// <see cref="TemplateLimitException"/>). <paramref name="cancellationToken"/> is checked every 1,024 steps; a
    /// cancelled render throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public string Render(IDictionary<string, object?> context, CancellationToken cancellationToken) =>
        Render(context, cancellationToken, out _);

    /// <summary>Renders and reports the steps the render took (deterministic: tests use it to check the cost of a render).</summary>
    internal string Render(IDictionary<string, object?> context, CancellationToken cancellationToken, out long steps)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var globals = JinjaBuiltins.MakeGlobals(options);
        if (options.Globals is not null)
            foreach (var (k, v) in options.Globals) globals[k] = JinjaValue.Normalize(v);
        var scope = new Scope(null);
        long inputSize = 0;
        foreach (var (k, v) in context)
        {
            var value = JinjaValue.Normalize(v);
            scope.Vars[k] = value;
            inputSize += RenderBudget.InputSize(value);
        }
        var budget = new RenderBudget(options.Limits, inputSize, cancellationToken);
        var interp = new JinjaInterpreter(options, globals, budget);
        var sb = new StringBuilder();
        using var entered = budget.Enter();
        try
        {
            interp.Exec(body, scope, sb);
        }
        catch (InsufficientExecutionStackException)
        {
            throw new TemplateException("maximum recursion depth exceeded", 0, 0);
        }
        catch (JinjaLimitError e)
        {
            throw e.At(0, 0);
        }
        steps = budget.Steps;
        return sb.ToString();
    }

    /// <summary>Renders with no variables.</summary>
    public string Render() => Render(new Dictionary<string, object?>());
}
