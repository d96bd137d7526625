using System.Text;

namespace OpenWeights.Inference.ChatTemplates;

internal sealed class Scope(Scope? parent)
{
    public readonly Dictionary<string, object?> Vars = new(StringComparer.Ordinal);
    public readonly Scope? Parent = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s is not null; s = s.Parent)
            if (s.Vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }
}

internal enum Flow { Normal, Break, Continue }

/// <summary>The <c>loop</c> variable inside a for loop.</summary>
internal sealed class JinjaLoop : JinjaCallable
{
    public required List<object?> Items;
    public int Index0;
    public int Depth0;
    public object? LastChanged = JinjaUndefined.Instance;
    public Func<object?, string>? Recurse;
    internal override string Name => "loop";

    internal override object? Call(List<object?> args, List<KeyValuePair<string, object?>> kwargs)
    {
        if (Recurse is null) throw new JinjaError("Tried to call non recursive loop. Maybe you forgot the 'recursive' modifier.");
        return Recurse(args.Count > 0 ? args[0] : JinjaUndefined.Instance);
    }

    public object? Get(string name) => name switch
    {
        "index" => (long)(Index0 + 1),
        "index0" => (long)Index0,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => (long)(Depth0 + 1),
        "depth0" => (long)Depth0,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new JinjaUndefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : new JinjaUndefined("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", (a, _) =>
        {
            if (a.Count == 0) throw new JinjaError("no items for cycling given");
            return a[Index0 % a.Count];
        }),
        "changed" => new BuiltinFunction("changed", (a, _) =>
        {
            var v = new JinjaTuple([.. a]);
            if (JinjaValue.PyEquals(v, LastChanged)) return false;
            LastChanged = v;
            return true;
        }),
        _ => JinjaUndefined.Missing(this, name),
    };
}

/// <summary>A callable implemented in C# (builtins, bound methods).</summary>
internal sealed class BuiltinFunction(string name, Func<List<object?>, List<KeyValuePair<string, object?>>, object?> fn) : JinjaCallable
{
    internal override string Name => name;
    internal override object? Call(List<object?> args, List<KeyValuePair<string, object?>> kwargs) => fn(args, kwargs);
}

/// <summary>A macro (or a call block's caller) bound to the scope it was defined in.</summary>
internal sealed class Macro(JinjaInterpreter interp, string name, List<(string Name, Expr? Default)> ps, List<Node> body, Scope closure, JinjaCallable? caller) : JinjaCallable
{
    internal override string Name => name;

    internal override object? Call(List<object?> args, List<KeyValuePair<string, object?>> kwargs)
    {
        var s = new Scope(closure);
        var kw = new JinjaDict();
        foreach (var (k, v) in kwargs) kw[k] = v;
        for (var i = 0; i < ps.Count; i++)
        {
            var (pn, def) = ps[i];
            if (i < args.Count)
            {
                if (kw.ContainsKey(pn)) throw new JinjaError($"macro '{name}' got multiple values for argument '{pn}'");
                s.Vars[pn] = args[i];
            }
            else if (kw.Remove(pn, out var kv)) s.Vars[pn] = kv;
            else if (def is not null) s.Vars[pn] = interp.Eval(def, s);
            else s.Vars[pn] = new JinjaUndefined($"parameter '{pn}' was not provided");
        }
        if (kw.Remove("caller", out var c)) s.Vars["caller"] = c;
        else if (caller is not null) s.Vars["caller"] = caller;
        s.Vars["varargs"] = new JinjaTuple(args.Skip(ps.Count).ToArray());
        s.Vars["kwargs"] = kw;
        var sb = new StringBuilder();
        interp.EnterCall();
        try { interp.Exec(body, s, sb); }
        finally { interp.ExitCall(); }
        return sb.ToString();
    }
}

/// <summary>Tree-walking evaluator for the AST with Python/Jinja2 semantics.</summary>
internal sealed class JinjaInterpreter
{
    private readonly JinjaTemplateOptions options;
    private readonly Dictionary<string, object?> globals;
    private readonly RenderBudget budget;
    private int depth;

    public JinjaInterpreter(JinjaTemplateOptions options, Dictionary<string, object?> globals, RenderBudget budget)
    {
        this.options = options;
        this.globals = globals;
        this.budget = budget;
    }

    public JinjaTemplateOptions Options => options;
    public RenderBudget Budget => budget;

    public void EnterCall()
    {
        if (++depth > 500) throw new JinjaError("maximum recursion depth exceeded");
    }

    public void ExitCall() => depth--;

    // ------------------------------------------------------------------ statements

    public Flow Exec(List<Node> nodes, Scope scope, StringBuilder sb)
    {
        foreach (var n in nodes)
        {
            var f = ExecNode(n, scope, sb);
            if (f != Flow.Normal) return f;
        }
        return Flow.Normal;
    }

    private Flow ExecNode(Node n, Scope scope, StringBuilder sb)
    {
        budget.Step();
        try
        {
            switch (n)
            {
                case TextNode t: Emit(sb, t.Text); return Flow.Normal;
                case OutputNode o: Emit(sb, JinjaValue.ToPyString(Eval(o.Expr, scope))); return Flow.Normal;
                case IfNode f:
                    foreach (var (cond, body) in f.Branches)
                        if (JinjaValue.IsTruthy(Eval(cond, scope))) return Exec(body, scope, sb);
                    return f.Else is null ? Flow.Normal : Exec(f.Else, scope, sb);
                case ForNode f: ExecFor(f, Eval(f.Iter, scope), scope, sb, 0); return Flow.Normal;
                case SetNode s when s.Value is not null && AppendTarget(s) is { } target:
                    AppendInPlace(s, target, scope);
                    return Flow.Normal;
                case SetNode s:
                    {
                        object? value;
                        if (s.Value is not null) value = Eval(s.Value, scope);
                        else
                        {
                            var inner = new StringBuilder();
                            Exec(s.Body!, scope, inner);
                            value = inner.ToString();
                            foreach (var fe in s.BodyFilters!) value = ApplyFilter(fe, value, scope);
                        }
                        Assign(s.Target, value, scope);
                        return Flow.Normal;
                    }
                case MacroNode m:
                    scope.Vars[m.Name] = new Macro(this, m.Name, m.Params, m.Body, scope, null);
                    return Flow.Normal;
                case CallBlockNode c:
                    {
                        var caller = new Macro(this, "caller", c.Params, c.Body, scope, null);
                        var fn = Eval(c.Call.Fn, scope);
                        var (args, kwargs) = EvalArgs(c.Call, scope);
                        kwargs.Add(new("caller", caller));
                        Emit(sb, JinjaValue.ToPyString(CallValue(fn, args, kwargs)));
                        return Flow.Normal;
                    }
                case FilterBlockNode fb:
                    {
                        var inner = new StringBuilder();
                        Exec(fb.Body, scope, inner);
                        object? value = inner.ToString();
                        foreach (var fe in fb.Filters) value = ApplyFilter(fe, value, scope);
                        Emit(sb, JinjaValue.ToPyString(value));
                        return Flow.Normal;
                    }
                case WithNode w:
                    {
                        var s = new Scope(scope);
                        foreach (var (target, value) in w.Assignments) Assign(target, Eval(value, scope), s);
                        return Exec(w.Body, s, sb);
                    }
                case BlockNode b: return Exec(b.Body, scope, sb);
                case BreakNode: return Flow.Break;
                case ContinueNode: return Flow.Continue;
                default: throw new JinjaError($"cannot execute {n.GetType().Name}");
            }
        }
        catch (JinjaLimitError e) { throw e.At(n.Line, n.Col); }
        catch (JinjaError e) { throw new TemplateException(e.Message, n.Line, n.Col, e.RaisedByTemplate); }
    }

    /// <summary>Appends to the output (or a block's), within the output budget.</summary>
    private void Emit(StringBuilder sb, string text)
    {
        budget.CheckOutput((long)sb.Length + text.Length);
        sb.Append(text);
    }

    private void ExecFor(ForNode f, object? iterable, Scope scope, StringBuilder sb, int loopDepth)
    {
        var items = JinjaBuiltins.Iterate(iterable);
        if (f.Filter is not null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                budget.Step();
                var fs = new Scope(scope);
                Assign(f.Target, item, fs);
                if (JinjaValue.IsTruthy(Eval(f.Filter, fs))) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0)
        {
            if (f.Else is not null) Exec(f.Else, scope, sb);
            return;
        }
        var loop = new JinjaLoop { Items = items, Depth0 = loopDepth };
        if (f.Recursive)
        {
            loop.Recurse = v =>
            {
                var inner = new StringBuilder();
                EnterCall();
                try { ExecFor(f, v, scope, inner, loopDepth + 1); }
                finally { ExitCall(); }
                return inner.ToString();
            };
        }
        for (var i = 0; i < items.Count; i++)
        {
            budget.Step();
            loop.Index0 = i;
            var s = new Scope(scope);
            s.Vars["loop"] = loop;
            Assign(f.Target, items[i], s);
            if (Exec(f.Body, s, sb) == Flow.Break) break;
        }
    }

    private void Assign(Expr target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameExpr n: scope.Vars[n.Name] = value; break;
            case TupleExpr t:
                {
                    var items = JinjaBuiltins.Iterate(value);
                    if (items.Count != t.Items.Count)
                        throw new JinjaError(items.Count > t.Items.Count
                            ? $"too many values to unpack (expected {t.Items.Count})"
                            : $"not enough values to unpack (expected {t.Items.Count}, got {items.Count})");
                    for (var i = 0; i < items.Count; i++) Assign(t.Items[i], items[i], scope);
                    break;
                }
            case GetAttrExpr g:
                {
                    var obj = Eval(g.Obj, scope);
                    if (obj is not JinjaNamespace ns) throw new JinjaError("cannot assign attribute on non-namespace object");
                    ns.Set(g.Name, value);
                    break;
                }
            default: throw new JinjaError("cannot assign to this expression");
        }
    }

    // ------------------------------------------------------------------ expressions

    public object? Eval(Expr e, Scope scope)
    {
        if (!System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw new TemplateException("maximum recursion depth exceeded", e.Line, e.Col);
        budget.Step();
        try { return EvalInner(e, scope); }
        catch (JinjaLimitError err) { throw err.At(e.Line, e.Col); }
        catch (JinjaError err) { throw new TemplateException(err.Message, e.Line, e.Col, err.RaisedByTemplate); }
        catch (OverflowException) { throw new TemplateException(JinjaBuiltins.IntegerOverflow, e.Line, e.Col); }
        catch (Exception err) when (err is not (TemplateException or OperationCanceledException))
        {
            throw new TemplateException(err.Message, e.Line, e.Col, false, err);
        }
    }

    private object? EvalInner(Expr e, Scope scope)
    {
        switch (e)
        {
            case ConstExpr c: return c.Value;
            case NameExpr n:
                if (scope.TryGet(n.Name, out var v)) return v;
                if (globals.TryGetValue(n.Name, out v)) return v;
                return JinjaUndefined.Named(n.Name);
            case ListExpr l: return l.Items.Select(x => Eval(x, scope)).ToList();
            case TupleExpr t: return new JinjaTuple(t.Items.Select(x => Eval(x, scope)).ToArray());
            case DictExpr d:
                {
                    var r = new JinjaDict();
                    foreach (var (k, x) in d.Items)
                    {
                        var key = JinjaValue.Unwrap(Eval(k, scope));
                        if (key is null or JinjaUndefined or List<object?> or JinjaDict) throw new JinjaError($"unhashable dict key of type '{JinjaValue.TypeName(key)}'");
                        r[key] = Eval(x, scope);
                    }
                    return r;
                }
            case GetAttrExpr g: return JinjaBuiltins.GetAttr(Eval(g.Obj, scope), g.Name, options.Sandboxed);
            case GetItemExpr g: return JinjaBuiltins.GetItem(Eval(g.Obj, scope), Eval(g.Key, scope), options.Sandboxed);
            case SliceExpr s:
                return JinjaBuiltins.Slice(Eval(s.Obj, scope),
                    s.Start is null ? null : Eval(s.Start, scope),
                    s.Stop is null ? null : Eval(s.Stop, scope),
                    s.Step is null ? null : Eval(s.Step, scope));
            case CallExpr c:
                {
                    if (TryAffixOfAccumulator(c, scope, out var affix)) return affix;
                    var fn = Eval(c.Fn, scope);
                    var (args, kwargs) = EvalArgs(c, scope);
                    return CallValue(fn, args, kwargs);
                }
            case FilterExpr f: return ApplyFilter(f, Eval(f.Value!, scope), scope);
            case TestExpr t:
                {
                    var value = Eval(t.Value, scope);
                    var args = t.Args.Select(x => Eval(x, scope)).ToList();
                    var r = JinjaBuiltins.CallTest(t.Name, value, args, this);
                    return t.Negated ? !r : r;
                }
            case UnaryExpr u:
                {
                    var x = Eval(u.Operand, scope);
                    return u.Op switch
                    {
                        "not" => !JinjaValue.IsTruthy(x),
                        "-" => JinjaBuiltins.Negate(x),
                        _ => JinjaBuiltins.Positive(x),
                    };
                }
            case BinaryExpr b:
                {
                    var l = Eval(b.Left, scope);
                    if (b.Op == "and") return JinjaValue.IsTruthy(l) ? Eval(b.Right, scope) : l;
                    if (b.Op == "or") return JinjaValue.IsTruthy(l) ? l : Eval(b.Right, scope);
                    return JinjaBuiltins.BinaryOp(b.Op, l, Eval(b.Right, scope));
                }
            case CompareExpr c:
                {
                    var left = Eval(c.First, scope);
                    foreach (var (op, re) in c.Rest)
                    {
                        var right = Eval(re, scope);
                        if (!JinjaBuiltins.Compare(op, left, right)) return false;
                        left = right;
                    }
                    return true;
                }
            case ConcatExpr c:
                {
                    var parts = new string[c.Parts.Count];
                    long length = 0;
                    for (var i = 0; i < parts.Length; i++) length += (parts[i] = JinjaValue.ToPyString(Eval(c.Parts[i], scope))).Length;
                    budget.CheckString(length);
                    return string.Concat(parts);
                }
            case CondExpr c:
                if (JinjaValue.IsTruthy(Eval(c.Cond, scope))) return Eval(c.Then, scope);
                return c.Else is null
                    ? new JinjaUndefined($"the inline if-expression on line {c.Line} evaluated to false and no else section was defined.")
                    : Eval(c.Else, scope);
            default: throw new JinjaError($"cannot evaluate {e.GetType().Name}");
        }
    }

    // ------------------------------------------------------------------ accumulating strings in place

    /// <summary>
    /// The attribute of <c>{% set ns.x = ns.x ~ a ~ b %}</c> (or <c>ns.x + a + b</c>), the way templates build their
    /// output in a namespace: such a set appends to the attribute in place, so a loop of them is linear in the
    /// output, not quadratic. Null when the set has another form.
    /// </summary>
    private static GetAttrExpr? AppendTarget(SetNode s)
    {
        if (s.AppendForm == 0)
        {
            s.AppendForm = 1;
            if (s.Target is GetAttrExpr { Obj: NameExpr n } t)
            {
                var first = s.Value switch
                {
                    ConcatExpr c => c.Parts[0],
                    BinaryExpr { Op: "+" } b => PlusChain(b)[0],
                    _ => null,
                };
                if (first is GetAttrExpr { Obj: NameExpr n2 } f && f.Name == t.Name && n2.Name == n.Name) s.AppendForm = 2;
            }
        }
        return s.AppendForm == 2 ? (GetAttrExpr)s.Target : null;
    }

    /// <summary><c>((a + b) + c)</c> → [a, b, c].</summary>
    private static List<Expr> PlusChain(BinaryExpr b)
    {
        var rights = new List<Expr>();
        Expr e = b;
        while (e is BinaryExpr { Op: "+" } p) { rights.Add(p.Right); e = p.Left; }
        rights.Add(e);
        rights.Reverse();
        return rights;
    }

    /// <summary>
    /// <c>ns.out.endswith(s)</c> / <c>startswith(s)</c> on a string being accumulated, answered without making the
    /// whole string (Reka-Edge asks after every tool call; making it each time would be quadratic again).
    /// </summary>
    private bool TryAffixOfAccumulator(CallExpr c, Scope scope, out object? result)
    {
        result = null;
        if (c is not { Fn: GetAttrExpr { Name: "endswith" or "startswith", Obj: GetAttrExpr { Obj: NameExpr nsName } held } method }
            || c.Args.Count != 1 || c.Kwargs.Count != 0 || c.StarArgs is not null || c.StarKwargs is not null
            || !scope.TryGet(nsName.Name, out var obj) || obj is not JinjaNamespace ns
            || !ns.TryGetRaw(held.Name, out var raw) || raw is not StringAccumulator acc)
            return false;
        var arg = Eval(c.Args[0], scope);
        result = arg is string p
            ? method.Name == "endswith" ? acc.EndsWith(p) : acc.StartsWith(p)
            : CallValue(JinjaBuiltins.GetAttr(acc.Value, method.Name, options.Sandboxed), [arg], []);
        return true;
    }

    private void AppendInPlace(SetNode s, GetAttrExpr target, Scope scope)
    {
        // the same result as evaluating the value and assigning it: ns.x's value before the rest is evaluated,
        // followed by the rest (a StringAccumulator only grows, so its first len0 characters are that value)
        var obj = Eval(target.Obj, scope);
        if (obj is not JinjaNamespace ns || !ns.TryGetRaw(target.Name, out var raw) || raw is not StringAccumulator acc)
        {
            var value = Eval(s.Value!, scope);
            Assign(target, value, scope);
            if (value is string str && obj is JinjaNamespace ns0) ns0.SetRaw(target.Name, new StringAccumulator(str));
            return;
        }
        budget.Step();
        var len0 = acc.Length;
        var parts = new List<string>();
        long added = 0;
        if (s.Value is ConcatExpr c)
        {
            for (var i = 1; i < c.Parts.Count; i++)
            {
                var p = JinjaValue.ToPyString(Eval(c.Parts[i], scope));
                parts.Add(p);
                added += p.Length;
            }
        }
        else
        {
            var chain = PlusChain((BinaryExpr)s.Value!);
            object? generic = null; // once an operand is not a plain string, finish with Python's + from the value so far
            for (var i = 1; i < chain.Count; i++)
            {
                var v = Eval(chain[i], scope);
                if (generic is null && v is string p) { parts.Add(p); added += p.Length; continue; }
                generic ??= acc.Prefix(len0) + string.Concat(parts);
                try { generic = JinjaBuiltins.BinaryOp("+", generic, v); }
                catch (JinjaLimitError err) { throw err.At(s.Value!.Line, s.Value.Col); }
                catch (JinjaError err) { throw new TemplateException(err.Message, s.Value!.Line, s.Value.Col, err.RaisedByTemplate); }
            }
            if (generic is not null)
            {
                ns.Set(target.Name, generic);
                return;
            }
        }
        budget.CheckOutput((long)len0 + added);
        budget.Charge(added >> 4);
        if (ns.TryGetRaw(target.Name, out var now) && ReferenceEquals(now, acc) && acc.Length == len0)
            foreach (var p in parts) acc.Append(p);
        else
            ns.SetRaw(target.Name, new StringAccumulator(acc.Prefix(len0) + string.Concat(parts)));
    }

    private (List<object?>, List<KeyValuePair<string, object?>>) EvalArgs(CallExpr c, Scope scope)
    {
        var args = c.Args.Select(x => Eval(x, scope)).ToList();
        var kwargs = c.Kwargs.Select(k => new KeyValuePair<string, object?>(k.Name, Eval(k.Value, scope))).ToList();
        if (c.StarArgs is not null) args.AddRange(JinjaBuiltins.Iterate(Eval(c.StarArgs, scope)));
        if (c.StarKwargs is not null)
        {
            if (Eval(c.StarKwargs, scope) is not JinjaDict d) throw new JinjaError("argument after ** must be a mapping");
            foreach (var (k, v) in d) kwargs.Add(new(JinjaValue.ToPyString(k), v));
        }
        return (args, kwargs);
    }

    public object? CallValue(object? fn, List<object?> args, List<KeyValuePair<string, object?>> kwargs)
    {
        switch (fn)
        {
            case JinjaCallable c: return c.Call(args, kwargs);
            case JinjaUndefined u: throw new JinjaError(u.Hint);
            default: throw new JinjaError($"'{JinjaValue.TypeName(fn)}' object is not callable");
        }
    }

    private object? ApplyFilter(FilterExpr f, object? value, Scope scope)
    {
        var args = f.Args.Select(x => Eval(x, scope)).ToList();
        var kwargs = f.Kwargs.Select(k => new KeyValuePair<string, object?>(k.Name, Eval(k.Value, scope))).ToList();
        return JinjaBuiltins.CallFilter(f.Name, value, args, kwargs, this);
    }
}
