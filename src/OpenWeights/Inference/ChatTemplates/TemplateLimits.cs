namespace OpenWeights.Inference.ChatTemplates;

/// <summary>
/// Bounds on one render. A chat template comes from a downloaded model file, so it is untrusted code: these keep a
/// hostile or broken template from running forever or exhausting memory. Each budget is
/// <c>max(its value, InputScale × input size)</c>, where the input size is the characters of the strings plus the
/// number of values in the render's context, so a large conversation gets a proportionally larger budget.
/// </summary>
public sealed record TemplateLimits
{
    /// <summary>
    /// Interpreter steps: an expression evaluated, a statement run, a loop iteration; builtins that copy or scan
    /// count their work too (a step per 16 characters, per 4 items). Rendering a 20,000-message conversation with a
    /// real template (Reka-Edge) takes about 1.3 million.
    /// </summary>
    public long MaxSteps { get; init; } = 20_000_000;

    /// <summary>Characters of output, and of any one string the template builds (<c>*</c>, <c>~</c>, <c>join</c>, padding...).</summary>
    public long MaxOutputLength { get; init; } = 16 * 1024 * 1024;

    /// <summary>Items of any one list or tuple the template builds (<c>*</c>, <c>+</c>, <c>list</c>, <c>batch</c>...).</summary>
    public long MaxItems { get; init; } = 1_000_000;

    /// <summary>How much each budget grows per unit of input (see the type's summary).</summary>
    public long InputScale { get; init; } = 64;

    /// <summary>The defaults above.</summary>
    public static TemplateLimits Default { get; } = new();

    /// <summary>No bounds (trusted templates only).</summary>
    public static TemplateLimits None { get; } = new() { MaxSteps = long.MaxValue, MaxOutputLength = int.MaxValue, MaxItems = int.MaxValue, InputScale = 0 };
}

/// <summary>A render stopped because it went past one of its <see cref="TemplateLimits"/>.</summary>
public sealed class TemplateLimitException : TemplateException
{
    /// <summary>The limit's name, as in <see cref="TemplateLimits"/> (e.g. <c>MaxSteps</c>).</summary>
    public string Limit { get; }
    /// <summary>The limit's value in this render (after scaling with the input).</summary>
    public long Value { get; }

    public TemplateLimitException(string limit, long value, string what, int line = 0, int column = 0)
        : base(Describe(limit, value, what), line, column)
    {
        Limit = limit;
        Value = value;
    }

    internal static string Describe(string limit, long value, string what) =>
        $"the template exceeded its {what} limit ({limit} = {value.ToString(System.Globalization.CultureInfo.InvariantCulture)})";
}

/// <summary>A limit hit inside evaluation, before the location is known; converted to <see cref="TemplateLimitException"/>.</summary>
internal sealed class JinjaLimitError(string limit, long value, string what) : JinjaError(TemplateLimitException.Describe(limit, value, what))
{
    public string Limit { get; } = limit;
    public long Value { get; } = value;
    public string What { get; } = what;
    public TemplateLimitException At(int line, int column) => new(Limit, Value, What, line, column);
}

/// <summary>
/// The budgets of one render: steps, string and list sizes, and the caller's cancellation (checked every 1,024
/// steps). The interpreter holds it; static builtins reach it through <see cref="Current"/>, which a render sets on
/// its thread for its duration (rendering is synchronous).
/// </summary>
internal sealed class RenderBudget
{
    [ThreadStatic] private static RenderBudget? current;
    private static readonly RenderBudget Unbounded = new(TemplateLimits.None, 0, CancellationToken.None);

    private readonly CancellationToken cancel;
    private long steps, nextCheck;
    public long MaxSteps { get; }
    public long MaxString { get; }
    public long MaxItems { get; }
    public long Steps => steps;

    public RenderBudget(TemplateLimits limits, long inputSize, CancellationToken cancel)
    {
        this.cancel = cancel;
        MaxSteps = Scale(limits.MaxSteps, limits.InputScale, inputSize);
        MaxString = Math.Min(Scale(limits.MaxOutputLength, limits.InputScale, inputSize), Array.MaxLength);
        MaxItems = Math.Min(Scale(limits.MaxItems, limits.InputScale, inputSize), Array.MaxLength);
        nextCheck = Math.Min(1024, MaxSteps + 1);
    }

    private static long Scale(long value, long scale, long input)
    {
        if (scale <= 0 || input <= 0) return value;
        var scaled = input > long.MaxValue / scale ? long.MaxValue : input * scale;
        return Math.Max(value, scaled);
    }

    /// <summary>The budget of the render running on this thread (outside a render, e.g. <c>JinjaValue.Repr</c> called by a host: none).</summary>
    public static RenderBudget Current => current ?? Unbounded;

    /// <summary>Makes this the thread's current budget until the returned scope is disposed.</summary>
    public Scope Enter() => new(this);

    public readonly struct Scope : IDisposable
    {
        private readonly RenderBudget? previous;
        internal Scope(RenderBudget b) { previous = current; current = b; }
        public void Dispose() => current = previous;
    }

    /// <summary>One interpreter step.</summary>
    public void Step()
    {
        if (++steps >= nextCheck) Check();
    }

    /// <summary>Work worth <paramref name="n"/> steps.</summary>
    public void Charge(long n)
    {
        if (n <= 0) return;
        steps = steps > long.MaxValue - n ? long.MaxValue : steps + n;
        if (steps >= nextCheck) Check();
    }

    private void Check()
    {
        cancel.ThrowIfCancellationRequested();
        if (steps > MaxSteps) throw new JinjaLimitError(nameof(TemplateLimits.MaxSteps), MaxSteps, "step");
        nextCheck = steps > MaxSteps - 1024 ? MaxSteps + 1 : steps + 1024;
    }

    /// <summary>A string of <paramref name="length"/> characters is about to be built: refuse it past the limit, charge the copy.</summary>
    public void CheckString(long length)
    {
        if (length > MaxString) throw StringLimit();
        Charge(length >> 4);
    }

    /// <summary>The render's output (or a block's) has grown to <paramref name="length"/> characters.</summary>
    public void CheckOutput(long length)
    {
        if (length > MaxString) throw StringLimit();
    }

    /// <summary>A list of <paramref name="count"/> items is about to be built: refuse it past the limit, charge the copy.</summary>
    public void CheckItems(long count, bool copy = true)
    {
        if (count > MaxItems) throw new JinjaLimitError(nameof(TemplateLimits.MaxItems), MaxItems, "list size");
        if (copy) Charge(count >> 2);
    }

    private JinjaLimitError StringLimit() => new(nameof(TemplateLimits.MaxOutputLength), MaxString, "output size");

    /// <summary>The input size the budgets scale with: characters of strings plus the number of values.</summary>
    public static long InputSize(object? v, int depth = 0)
    {
        if (depth > 64) return 1;
        switch (v)
        {
            case string s: return 1 + s.Length;
            case JinjaMarkup m: return 1 + m.Value.Length;
            case List<object?> l:
                {
                    long n = 1;
                    foreach (var x in l) n += InputSize(x, depth + 1);
                    return n;
                }
            case JinjaTuple t:
                {
                    long n = 1;
                    foreach (var x in t.Items) n += InputSize(x, depth + 1);
                    return n;
                }
            case JinjaDict d:
                {
                    long n = 1;
                    foreach (var (k, x) in d) n += InputSize(k, depth + 1) + InputSize(x, depth + 1);
                    return n;
                }
            default: return 1;
        }
    }
}
