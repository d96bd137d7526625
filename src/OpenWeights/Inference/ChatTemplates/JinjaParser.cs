using System.Globalization;

namespace OpenWeights.Inference.ChatTemplates;

/// <summary>Recursive-descent parser producing the AST, with Jinja2's operator precedence.</summary>
internal sealed class JinjaParser
{
    private readonly List<Token> toks;
    private int i;
    // Jinja reports unknown filters/tests at compile time, except inside an if (a "soft" frame): then only when run.
    private bool soft;

    private JinjaParser(List<Token> toks) { this.toks = toks; }

    public static List<Node> Parse(List<Token> toks)
    {
        var p = new JinjaParser(toks);
        var body = p.ParseBody([]);
        if (p.Cur.Kind != TokKind.Eof) throw p.Fail($"unexpected {p.Cur}");
        return body;
    }

    private Token Cur => toks[i];

    /// <summary>Hostile templates may nest without bound; fail cleanly instead of overflowing the stack.</summary>
    private void GuardDepth()
    {
        if (!System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw Fail("template is nested too deeply");
    }

    private Token Peek(int n = 1) => toks[Math.Min(i + n, toks.Count - 1)];
    private Token Next() => toks[i++];

    private TemplateException Fail(string msg, Token? at = null)
    {
        var t = at ?? Cur;
        return new TemplateException(msg, t.Line, t.Col);
    }

    private T At<T>(T node, Token t) where T : Node { node.Line = t.Line; node.Col = t.Col; return node; }

    private void ExpectOp(string op)
    {
        if (!Cur.IsOp(op)) throw Fail($"expected '{op}', got {Cur}");
        i++;
    }

    private void ExpectName(string name)
    {
        if (!Cur.IsName(name)) throw Fail($"expected '{name}', got {Cur}");
        i++;
    }

    private string ExpectIdent()
    {
        if (Cur.Kind != TokKind.Name) throw Fail($"expected a name, got {Cur}");
        return Next().Value;
    }

    private void ExpectBlockEnd()
    {
        if (Cur.Kind != TokKind.BlockEnd) throw Fail($"expected end of statement block, got {Cur}");
        i++;
    }

    // ------------------------------------------------------------------ statements

    private List<Node> ParseBody(string[] endTags)
    {
        var body = new List<Node>();
        while (true)
        {
            var t = Cur;
            switch (t.Kind)
            {
                case TokKind.Eof:
                    if (endTags.Length > 0) throw Fail($"unexpected end of template; expected {string.Join(" or ", endTags.Select(e => $"'{e}'"))}");
                    return body;
                case TokKind.Text:
                    i++;
                    body.Add(At(new TextNode(t.Value), t));
                    break;
                case TokKind.VarBegin:
                    i++;
                    var e = ParseTuple();
                    if (Cur.Kind != TokKind.VarEnd) throw Fail($"expected end of print statement, got {Cur}");
                    i++;
                    body.Add(At(new OutputNode(e), t));
                    break;
                case TokKind.BlockBegin:
                    var nameTok = Peek();
                    if (nameTok.Kind == TokKind.Name && endTags.Contains(nameTok.Value)) return body;
                    i++;
                    body.Add(ParseStatement());
                    break;
                default:
                    throw Fail($"unexpected {t}");
            }
        }
    }

    private List<Node> SubBody(string[] endTags, bool softFrame)
    {
        var saved = soft;
        soft = softFrame;
        try { return ParseBody(endTags); }
        finally { soft = saved; }
    }

    private Node ParseStatement()
    {
        GuardDepth();
        var t = Cur;
        if (t.Kind != TokKind.Name) throw Fail($"expected a statement name, got {t}");
        i++;
        switch (t.Value)
        {
            case "for": return ParseFor(t);
            case "if": return ParseIf(t);
            case "set": return ParseSet(t);
            case "macro": return ParseMacro(t);
            case "call": return ParseCallBlock(t);
            case "filter": return ParseFilterBlock(t);
            case "with": return ParseWith(t);
            case "generation":
                {
                    ExpectBlockEnd();
                    var body = ParseBody(["endgeneration"]);
                    EndTag("endgeneration");
                    return At(new BlockNode(body), t);
                }
            case "break": ExpectBlockEnd(); return At(new BreakNode(), t);
            case "continue": ExpectBlockEnd(); return At(new ContinueNode(), t);
            case "endfor" or "endif" or "endset" or "endmacro" or "endcall" or "endfilter" or "endwith" or "endgeneration" or "else" or "elif":
                throw Fail($"unexpected '{t.Value}'", t);
            case "include" or "import" or "from" or "extends" or "block":
                throw Fail($"'{t.Value}' is not supported in chat templates", t);
            default:
                throw Fail($"Encountered unknown tag '{t.Value}'.", t);
        }
    }

    private void EndTag(string name)
    {
        if (Cur.Kind != TokKind.BlockBegin) throw Fail($"expected '{name}'");
        i++;
        ExpectName(name);
        ExpectBlockEnd();
    }

    private bool AtTag(string name) => Cur.Kind == TokKind.BlockBegin && Peek().IsName(name);

    private Node ParseFor(Token t)
    {
        var target = ParseAssignTarget(allowAttr: false);
        ExpectName("in");
        var iter = ParseTuple(withCond: false, extraEnd: ["recursive", "if"]);
        Expr? filter = null;
        if (Cur.IsName("if")) { i++; filter = ParseExpression(); }
        var recursive = false;
        if (Cur.IsName("recursive")) { i++; recursive = true; }
        ExpectBlockEnd();
        var body = SubBody(["endfor", "else"], false);
        List<Node>? elseBody = null;
        if (AtTag("else"))
        {
            i += 2;
            ExpectBlockEnd();
            elseBody = SubBody(["endfor"], false);
        }
        EndTag("endfor");
        return At(new ForNode { Target = target, Iter = iter, Filter = filter, Body = body, Else = elseBody, Recursive = recursive }, t);
    }

    private Node ParseIf(Token t)
    {
        var node = At(new IfNode(), t);
        var cond = ParseTuple();
        ExpectBlockEnd();
        while (true)
        {
            var body = SubBody(["elif", "else", "endif"], true);
            node.Branches.Add((cond, body));
            if (AtTag("elif"))
            {
                i += 2;
                cond = ParseTuple();
                ExpectBlockEnd();
                continue;
            }
            if (AtTag("else"))
            {
                i += 2;
                ExpectBlockEnd();
                node.Else = SubBody(["endif"], true);
            }
            EndTag("endif");
            return node;
        }
    }

    private Node ParseSet(Token t)
    {
        var target = ParseAssignTarget(allowAttr: true);
        if (Cur.IsOp("="))
        {
            i++;
            var value = ParseTuple();
            ExpectBlockEnd();
            return At(new SetNode { Target = target, Value = value }, t);
        }
        var filters = new List<FilterExpr>();
        while (Cur.IsOp("|")) { i++; filters.Add(ParseFilterCall(null)); }
        ExpectBlockEnd();
        var body = ParseBody(["endset"]);
        EndTag("endset");
        return At(new SetNode { Target = target, Body = body, BodyFilters = filters }, t);
    }

    private List<(string, Expr?)> ParseParams()
    {
        var ps = new List<(string, Expr?)>();
        ExpectOp("(");
        while (!Cur.IsOp(")"))
        {
            if (ps.Count > 0) ExpectOp(",");
            if (Cur.IsOp(")")) break;
            var name = ExpectIdent();
            Expr? def = null;
            if (Cur.IsOp("=")) { i++; def = ParseExpression(); }
            ps.Add((name, def));
        }
        i++;
        return ps;
    }

    private Node ParseMacro(Token t)
    {
        var name = ExpectIdent();
        var ps = ParseParams();
        ExpectBlockEnd();
        var body = SubBody(["endmacro"], false);
        EndTag("endmacro");
        return At(new MacroNode { Name = name, Params = ps, Body = body }, t);
    }

    private Node ParseCallBlock(Token t)
    {
        var ps = Cur.IsOp("(") ? ParseParams() : [];
        var e = ParseExpression();
        if (e is not CallExpr call) throw Fail("expected a call expression in call block", t);
        ExpectBlockEnd();
        var body = SubBody(["endcall"], false);
        EndTag("endcall");
        return At(new CallBlockNode { Call = call, Params = ps, Body = body }, t);
    }

    private Node ParseFilterBlock(Token t)
    {
        var filters = new List<FilterExpr> { ParseFilterCall(null) };
        while (Cur.IsOp("|")) { i++; filters.Add(ParseFilterCall(null)); }
        ExpectBlockEnd();
        var body = SubBody(["endfilter"], false);
        EndTag("endfilter");
        return At(new FilterBlockNode { Filters = filters, Body = body }, t);
    }

    private Node ParseWith(Token t)
    {
        var assigns = new List<(Expr, Expr)>();
        while (Cur.Kind != TokKind.BlockEnd)
        {
            if (assigns.Count > 0) ExpectOp(",");
            var target = ParseAssignTarget(allowAttr: false);
            ExpectOp("=");
            assigns.Add((target, ParseExpression()));
        }
        ExpectBlockEnd();
        var body = SubBody(["endwith"], false);
        EndTag("endwith");
        return At(new WithNode { Assignments = assigns, Body = body }, t);
    }

    private Expr ParseAssignTarget(bool allowAttr)
    {
        var t = Cur;
        var items = new List<Expr>();
        var paren = false;
        if (Cur.IsOp("(")) { i++; paren = true; }
        while (true)
        {
            var nt = Cur;
            var name = ExpectIdent();
            Expr e = At(new NameExpr(name), nt);
            if (allowAttr && Cur.IsOp(".") && items.Count == 0)
            {
                i++;
                e = At(new GetAttrExpr(e, ExpectIdent()), nt);
                if (!paren) return e;
            }
            items.Add(e);
            if (!Cur.IsOp(",")) break;
            i++;
            if (Cur.Kind != TokKind.Name) break;
        }
        if (paren) ExpectOp(")");
        return items.Count == 1 && !paren ? items[0] : At(new TupleExpr(items), t);
    }

    // ------------------------------------------------------------------ expressions

    private bool IsTupleEnd(string[]? extraEnd) =>
        Cur.Kind is TokKind.BlockEnd or TokKind.VarEnd or TokKind.Eof
        || (Cur.Kind == TokKind.Op && Cur.Value is ")" or "]" or "}" or "=" or ":")
        || (extraEnd is not null && Cur.Kind == TokKind.Name && extraEnd.Contains(Cur.Value));

    private Expr ParseTuple(bool withCond = true, string[]? extraEnd = null, bool explicitParens = false)
    {
        var t = Cur;
        var items = new List<Expr>();
        var sawComma = false;
        while (true)
        {
            if (items.Count > 0)
            {
                if (!Cur.IsOp(",")) break;
                i++;
                sawComma = true;
            }
            if (IsTupleEnd(extraEnd)) break;
            items.Add(withCond ? ParseExpression() : ParseOr());
        }
        if (!sawComma)
        {
            if (items.Count == 1) return items[0];
            if (!explicitParens) throw Fail($"expected an expression, got {Cur}");
        }
        return At(new TupleExpr(items), t);
    }

    private Expr ParseExpression()
    {
        GuardDepth();
        var t = Cur;
        var e = ParseOr();
        while (Cur.IsName("if"))
        {
            i++;
            var saved = soft;
            soft = true;
            var cond = ParseOr();
            Expr? otherwise = null;
            if (Cur.IsName("else")) { i++; otherwise = ParseExpression(); }
            soft = saved;
            e = At(new CondExpr(cond, e, otherwise), t);
        }
        return e;
    }

    private Expr ParseOr()
    {
        var e = ParseAnd();
        while (Cur.IsName("or")) { var t = Next(); e = At(new BinaryExpr("or", e, ParseAnd()), t); }
        return e;
    }

    private Expr ParseAnd()
    {
        var e = ParseNot();
        while (Cur.IsName("and")) { var t = Next(); e = At(new BinaryExpr("and", e, ParseNot()), t); }
        return e;
    }

    private Expr ParseNot()
    {
        if (Cur.IsName("not")) { var t = Next(); return At(new UnaryExpr("not", ParseNot()), t); }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var t = Cur;
        var e = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Cur.Kind == TokKind.Op && Cur.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                var op = Next().Value;
                rest.Add((op, ParseMath1()));
            }
            else if (Cur.IsName("in")) { i++; rest.Add(("in", ParseMath1())); }
            else if (Cur.IsName("not") && Peek().IsName("in")) { i += 2; rest.Add(("notin", ParseMath1())); }
            else break;
        }
        return rest.Count == 0 ? e : At(new CompareExpr(e, rest), t);
    }

    private Expr ParseMath1()
    {
        var e = ParseConcat();
        while (Cur.Kind == TokKind.Op && Cur.Value is "+" or "-")
        {
            var t = Next();
            e = At(new BinaryExpr(t.Value, e, ParseConcat()), t);
        }
        return e;
    }

    private Expr ParseConcat()
    {
        var t = Cur;
        var parts = new List<Expr> { ParseMath2() };
        while (Cur.IsOp("~")) { i++; parts.Add(ParseMath2()); }
        return parts.Count == 1 ? parts[0] : At(new ConcatExpr(parts), t);
    }

    private Expr ParseMath2()
    {
        var e = ParsePow();
        while (Cur.Kind == TokKind.Op && Cur.Value is "*" or "/" or "//" or "%")
        {
            var t = Next();
            e = At(new BinaryExpr(t.Value, e, ParsePow()), t);
        }
        return e;
    }

    private Expr ParsePow()
    {
        var e = ParseUnary();
        while (Cur.IsOp("**"))
        {
            var t = Next();
            e = At(new BinaryExpr("**", e, ParseUnary()), t);
        }
        return e;
    }

    private Expr ParseUnary(bool withFilter = true)
    {
        GuardDepth();
        var t = Cur;
        Expr e;
        if (Cur.IsOp("-")) { i++; e = At(new UnaryExpr("-", ParseUnary(false)), t); }
        else if (Cur.IsOp("+")) { i++; e = At(new UnaryExpr("+", ParseUnary(false)), t); }
        else e = ParsePrimary();
        e = ParsePostfix(e);
        if (withFilter) e = ParseFilterExpr(e);
        return e;
    }

    private Expr ParsePrimary()
    {
        var t = Cur;
        switch (t.Kind)
        {
            case TokKind.Name:
                i++;
                return t.Value switch
                {
                    "true" or "True" => At(new ConstExpr(true), t),
                    "false" or "False" => At(new ConstExpr(false), t),
                    "none" or "None" => At(new ConstExpr(null), t),
                    _ => At(new NameExpr(t.Value), t),
                };
            case TokKind.String:
                {
                    var s = Next().Value;
                    while (Cur.Kind == TokKind.String) s += Next().Value;
                    return At(new ConstExpr(s), t);
                }
            case TokKind.Int:
                i++;
                if (!long.TryParse(t.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var l))
                    return At(new ConstExpr(double.Parse(t.Value, CultureInfo.InvariantCulture)), t);
                return At(new ConstExpr(l), t);
            case TokKind.Float:
                i++;
                return At(new ConstExpr(double.Parse(t.Value, NumberStyles.Float, CultureInfo.InvariantCulture)), t);
            case TokKind.Op when t.Value == "(":
                {
                    i++;
                    var e = ParseTuple(explicitParens: true);
                    ExpectOp(")");
                    return e;
                }
            case TokKind.Op when t.Value == "[":
                {
                    i++;
                    var items = new List<Expr>();
                    while (!Cur.IsOp("]"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Cur.IsOp("]")) break;
                        items.Add(ParseExpression());
                    }
                    i++;
                    return At(new ListExpr(items), t);
                }
            case TokKind.Op when t.Value == "{":
                {
                    i++;
                    var items = new List<(Expr, Expr)>();
                    while (!Cur.IsOp("}"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Cur.IsOp("}")) break;
                        var k = ParseExpression();
                        ExpectOp(":");
                        items.Add((k, ParseExpression()));
                    }
                    i++;
                    return At(new DictExpr(items), t);
                }
            default:
                throw Fail($"unexpected {t}");
        }
    }

    private Expr ParsePostfix(Expr e)
    {
        while (true)
        {
            var t = Cur;
            if (t.IsOp("."))
            {
                i++;
                var n = Next();
                if (n.Kind == TokKind.Name) e = At(new GetAttrExpr(e, n.Value), t);
                else if (n.Kind == TokKind.Int) e = At(new GetItemExpr(e, At(new ConstExpr(long.Parse(n.Value, CultureInfo.InvariantCulture)), n)), t);
                else throw Fail($"expected an attribute name, got {n}", n);
            }
            else if (t.IsOp("[")) { i++; e = ParseSubscript(e, t); }
            else if (t.IsOp("(")) e = ParseCall(e);
            else return e;
        }
    }

    private Expr ParseSubscript(Expr obj, Token t)
    {
        Expr? start = null, stop = null, step = null;
        if (!Cur.IsOp(":"))
        {
            var e = ParseTuple();
            if (Cur.IsOp("]")) { i++; return At(new GetItemExpr(obj, e), t); }
            start = e;
        }
        ExpectOp(":");
        if (!Cur.IsOp("]") && !Cur.IsOp(":")) stop = ParseExpression();
        if (Cur.IsOp(":"))
        {
            i++;
            if (!Cur.IsOp("]")) step = ParseExpression();
        }
        ExpectOp("]");
        return At(new SliceExpr(obj, start, stop, step), t);
    }

    private (List<Expr>, List<(string, Expr)>, Expr?, Expr?) ParseArgs()
    {
        ExpectOp("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        Expr? star = null, starstar = null;
        var first = true;
        while (!Cur.IsOp(")"))
        {
            if (!first) ExpectOp(",");
            first = false;
            if (Cur.IsOp(")")) break;
            if (Cur.IsOp("*")) { i++; star = ParseExpression(); continue; }
            if (Cur.IsOp("**")) { i++; starstar = ParseExpression(); continue; }
            if (Cur.Kind == TokKind.Name && Peek().IsOp("="))
            {
                var name = Next().Value;
                i++;
                kwargs.Add((name, ParseExpression()));
                continue;
            }
            if (kwargs.Count > 0) throw Fail("positional argument follows keyword argument");
            args.Add(ParseExpression());
        }
        i++;
        return (args, kwargs, star, starstar);
    }

    private Expr ParseCall(Expr fn)
    {
        var t = Cur;
        var (args, kwargs, star, starstar) = ParseArgs();
        return At(new CallExpr(fn, args, kwargs) { StarArgs = star, StarKwargs = starstar }, t);
    }

    private Expr ParseFilterExpr(Expr e)
    {
        while (true)
        {
            if (Cur.IsOp("|")) { i++; e = ParseFilterCall(e); }
            else if (Cur.IsName("is")) e = ParseTest(e);
            else if (Cur.IsOp("(")) e = ParseCall(e);
            else return e;
        }
    }

    private FilterExpr ParseFilterCall(Expr? value)
    {
        var t = Cur;
        var name = ExpectIdent();
        while (Cur.IsOp(".")) { i++; name += "." + ExpectIdent(); }
        List<Expr> args = [];
        List<(string, Expr)> kwargs = [];
        if (Cur.IsOp("(")) (args, kwargs, _, _) = ParseArgs();
        if (!JinjaBuiltins.HasFilter(name) && !soft) throw Fail($"No filter named '{name}'.", t);
        return At(new FilterExpr(value, name, args, kwargs), t);
    }

    private Expr ParseTest(Expr value)
    {
        var t = Next(); // 'is'
        var negated = false;
        if (Cur.IsName("not")) { i++; negated = true; }
        var nt = Cur;
        string name;
        if (Cur.Kind == TokKind.Name) name = Next().Value;
        else throw Fail($"expected a test name, got {Cur}");
        while (Cur.IsOp(".")) { i++; name += "." + ExpectIdent(); }
        List<Expr> args = [];
        List<(string, Expr)> kwargs = [];
        if (Cur.IsOp("(")) (args, kwargs, _, _) = ParseArgs();
        else if ((Cur.Kind is TokKind.Name or TokKind.String or TokKind.Int or TokKind.Float
                  || (Cur.Kind == TokKind.Op && Cur.Value is "(" or "[" or "{"))
                 && !(Cur.Kind == TokKind.Name && Cur.Value is "else" or "or" or "and"))
        {
            if (Cur.IsName("is")) throw Fail("You cannot chain multiple tests with is");
            args = [ParsePostfix(ParsePrimary())];
        }
        if (!JinjaBuiltins.HasTest(name) && !soft) throw Fail($"No test named '{name}'.", nt);
        return At(new TestExpr(value, name, args, kwargs, negated), t);
    }
}
