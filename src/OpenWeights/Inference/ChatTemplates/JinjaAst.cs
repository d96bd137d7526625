namespace OpenWeights.Inference.ChatTemplates;

internal abstract class Node
{
    public int Line, Col;
}

// ------------------------------------------------------------------ statements
internal sealed class TextNode(string text) : Node { public readonly string Text = text; }
internal sealed class OutputNode(Expr expr) : Node { public readonly Expr Expr = expr; }
internal sealed class IfNode : Node
{
    public readonly List<(Expr Cond, List<Node> Body)> Branches = [];
    public List<Node>? Else;
}
internal sealed class ForNode : Node
{
    public required Expr Target;
    public required Expr Iter;
    public Expr? Filter;
    public required List<Node> Body;
    public List<Node>? Else;
    public bool Recursive;
}
internal sealed class SetNode : Node
{
    public required Expr Target;
    public Expr? Value;
    public List<Node>? Body;
    public List<FilterExpr>? BodyFilters;
    /// <summary>0 not yet known, 1 a plain set, 2 <c>ns.x = ns.x ~ ...</c> (see JinjaInterpreter.AppendTarget).</summary>
    public int AppendForm;
}
internal sealed class MacroNode : Node
{
    public required string Name;
    public required List<(string Name, Expr? Default)> Params;
    public required List<Node> Body;
}
internal sealed class CallBlockNode : Node
{
    public required CallExpr Call;
    public required List<(string Name, Expr? Default)> Params;
    public required List<Node> Body;
}
internal sealed class FilterBlockNode : Node
{
    public required List<FilterExpr> Filters;
    public required List<Node> Body;
}
internal sealed class WithNode : Node
{
    public required List<(Expr Target, Expr Value)> Assignments;
    public required List<Node> Body;
}
internal sealed class BlockNode(List<Node> body) : Node { public readonly List<Node> Body = body; }
internal sealed class BreakNode : Node;
internal sealed class ContinueNode : Node;

// ------------------------------------------------------------------ expressions
internal abstract class Expr : Node;
internal sealed class ConstExpr(object? value) : Expr { public readonly object? Value = value; }
internal sealed class NameExpr(string name) : Expr { public readonly string Name = name; }
internal sealed class ListExpr(List<Expr> items) : Expr { public readonly List<Expr> Items = items; }
internal sealed class TupleExpr(List<Expr> items) : Expr { public readonly List<Expr> Items = items; }
internal sealed class DictExpr(List<(Expr Key, Expr Value)> items) : Expr { public readonly List<(Expr Key, Expr Value)> Items = items; }
internal sealed class GetAttrExpr(Expr obj, string name) : Expr { public readonly Expr Obj = obj; public readonly string Name = name; }
internal sealed class GetItemExpr(Expr obj, Expr key) : Expr { public readonly Expr Obj = obj; public readonly Expr Key = key; }
internal sealed class SliceExpr(Expr obj, Expr? start, Expr? stop, Expr? step) : Expr
{
    public readonly Expr Obj = obj; public readonly Expr? Start = start, Stop = stop, Step = step;
}
internal sealed class CallExpr(Expr fn, List<Expr> args, List<(string Name, Expr Value)> kwargs) : Expr
{
    public readonly Expr Fn = fn; public readonly List<Expr> Args = args; public readonly List<(string Name, Expr Value)> Kwargs = kwargs;
    public Expr? StarArgs, StarKwargs;
}
internal sealed class FilterExpr(Expr? value, string name, List<Expr> args, List<(string Name, Expr Value)> kwargs) : Expr
{
    public Expr? Value = value; public readonly string Name = name; public readonly List<Expr> Args = args; public readonly List<(string Name, Expr Value)> Kwargs = kwargs;
}
internal sealed class TestExpr(Expr value, string name, List<Expr> args, List<(string Name, Expr Value)> kwargs, bool negated) : Expr
{
    public readonly Expr Value = value; public readonly string Name = name; public readonly List<Expr> Args = args;
    public readonly List<(string Name, Expr Value)> Kwargs = kwargs; public readonly bool Negated = negated;
}
internal sealed class UnaryExpr(string op, Expr operand) : Expr { public readonly string Op = op; public readonly Expr Operand = operand; }
internal sealed class BinaryExpr(string op, Expr left, Expr right) : Expr { public readonly string Op = op; public readonly Expr Left = left, Right = right; }
internal sealed class CompareExpr(Expr first, List<(string Op, Expr Right)> rest) : Expr { public readonly Expr First = first; public readonly List<(string Op, Expr Right)> Rest = rest; }
internal sealed class ConcatExpr(List<Expr> parts) : Expr { public readonly List<Expr> Parts = parts; }
internal sealed class CondExpr(Expr cond, Expr then, Expr? otherwise) : Expr { public readonly Expr Cond = cond, Then = then; public readonly Expr? Else = otherwise; }
