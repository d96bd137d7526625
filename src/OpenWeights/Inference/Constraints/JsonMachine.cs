using System.Runtime.CompilerServices;

namespace OpenWeights.Inference.Constraints;

internal enum FrameKind : byte { Root, Object, FreeObject, Array, String, Number, Literal }

/// <summary>One level of the automaton stack. Small and copied by value.</summary>
internal struct Frame
{
    public FrameKind Kind;
    public byte Phase;
    public byte Ws;    // whitespace bytes at the current position
    public byte Aux;
    public int Node;
    public int A;
    public int B;
}

/// <summary>An immutable link of the stack below the top frame; shared between alternatives and snapshots.</summary>
internal sealed class Link(Frame f, Link? next)
{
    public readonly Frame F = f;
    public readonly Link? Next = next;
}

/// <summary>A stack: the mutable-by-copy top frame plus an immutable rest. Copying is O(1).</summary>
internal struct MStack
{
    public Frame Top;
    public Link? Rest;
}

/// <summary>A growable list of stacks (the alternatives of a nondeterministic state).</summary>
internal sealed class StackList
{
    public MStack[] Items = new MStack[4];
    public int Count;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(in MStack s)
    {
        if (Count == Items.Length) Array.Resize(ref Items, Count * 2);
        Items[Count++] = s;
    }
    public void Clear() => Count = 0;
    public void CopyFrom(StackList o)
    {
        if (Items.Length < o.Count) Items = new MStack[o.Count];
        Array.Copy(o.Items, Items, o.Count);
        Count = o.Count;
    }
}

/// <summary>The byte-level transition function of a <see cref="JsonGrammar"/>.</summary>
internal static class JsonMachine
{
    // container phases
    private const byte Open = 0, Key = 1, Colon = 2, Value = 3, After = 4, Next = 5;
    // number phases
    private const byte NMinus = 0, NZero = 1, NInt = 2, NDot = 3, NFrac = 4, NE = 5, NESign = 6, NExp = 7;

    public static MStack Initial(JsonGrammar g) => new() { Top = new Frame { Kind = FrameKind.Root, Node = g.Root } };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsWs(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\t' or (byte)'\r';

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static MStack With(in MStack s, in Frame top) => new() { Top = top, Rest = s.Rest };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static MStack Push(in MStack s, in Frame parent, in Frame child) => new() { Top = child, Rest = new Link(parent, s.Rest) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static MStack Pop(in MStack s) => new() { Top = s.Rest!.F, Rest = s.Rest.Next };

    /// <summary>Whitespace at a position that allows it: adds the successor (if allowed) and returns true.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Whitespace(JsonGrammar g, in MStack s, Frame f, byte b, StackList outp)
    {
        if (!IsWs(b)) return false;
        // one space, or a newline followed by up to MaxIndent spaces (unless the grammar allows single spaces only); nothing else
        if (f.Ws == 0 && b == ' ') f.Ws = 1;
        else if (g.SingleSpace) return true;
        else if (f.Ws == 0 && b == '\n') f.Ws = 2;
        else if (f.Ws >= 2 && b == ' ' && f.Ws < 2 + JsonGrammar.MaxIndent) f.Ws++;
        else return true;
        outp.Add(With(s, f));
        return true;
    }

    /// <summary>Adds every successor of <paramref name="s"/> on byte <paramref name="b"/> to <paramref name="outp"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Step(JsonGrammar g, in MStack s, byte b, StackList outp)
    {
        Frame f = s.Top;
        switch (f.Kind)
        {
            case FrameKind.Root:
                if (f.Phase != 0) return;
                f.Phase = 1;
                StartValue(g, s, f, f.Node, b, outp);
                return;

            case FrameKind.String:
                StepString(g, s, f, b, outp);
                return;

            case FrameKind.Number:
                StepNumber(g, s, f, b, outp);
                return;

            case FrameKind.Literal:
            {
                var lit = g.Literals[f.A];
                if (f.B < lit.Length)
                {
                    if (lit[f.B] == b) { f.B++; outp.Add(With(s, f)); }
                    return;
                }
                Step(g, Pop(s), b, outp); // complete: the byte belongs to the parent
                return;
            }

            case FrameKind.Object:
            {
                var n = g.Nodes[f.Node];
                switch (f.Phase)
                {
                    case Open or Next:
                        if (Whitespace(g, s, f, b, outp)) return;
                        f.Ws = 0;
                        if (b == '}' && f.Phase == Open && n.FirstRequired[f.A] == n.Keys.Length) { outp.Add(Pop(s)); return; }
                        if (b == '"')
                        {
                            int last = Math.Min(n.FirstRequired[f.A], n.Keys.Length - 1);
                            for (int j = f.A; j <= last; j++)
                            {
                                var f2 = f; f2.Phase = Key; f2.A = j; f2.B = 1;
                                outp.Add(With(s, f2));
                            }
                        }
                        return;
                    case Key:
                    {
                        var key = n.Keys[f.A];
                        if (key[f.B] != b) return;
                        f.B++;
                        if (f.B == key.Length) f.Phase = Colon;
                        outp.Add(With(s, f));
                        return;
                    }
                    case Colon:
                        if (Whitespace(g, s, f, b, outp)) return;
                        if (b == ':') { f.Ws = 0; f.Phase = Value; outp.Add(With(s, f)); }
                        return;
                    case Value:
                    {
                        if (Whitespace(g, s, f, b, outp)) return;
                        f.Ws = 0; f.Phase = After;
                        int j = f.A; f.A = j + 1;
                        StartValue(g, s, f, n.PropNodes[j], b, outp);
                        return;
                    }
                    default: // After
                        if (Whitespace(g, s, f, b, outp)) return;
                        f.Ws = 0;
                        if (b == ',' && f.A < n.Keys.Length) { f.Phase = Next; outp.Add(With(s, f)); }
                        else if (b == '}' && n.FirstRequired[f.A] == n.Keys.Length) outp.Add(Pop(s));
                        return;
                }
            }

            case FrameKind.FreeObject:
            {
                var n = g.Nodes[f.Node];
                switch (f.Phase)
                {
                    case Open or Next:
                        if (Whitespace(g, s, f, b, outp)) return;
                        f.Ws = 0;
                        if (b == '}' && f.Phase == Open) { outp.Add(Pop(s)); return; }
                        if (b == '"')
                        {
                            f.Phase = Colon;
                            outp.Add(Push(s, f, new Frame { Kind = FrameKind.String, Node = g.KeyString }));
                        }
                        return;
                    case Colon:
                        if (Whitespace(g, s, f, b, outp)) return;
                        if (b == ':') { f.Ws = 0; f.Phase = Value; outp.Add(With(s, f)); }
                        return;
                    case Value:
                        if (Whitespace(g, s, f, b, outp)) return;
                        f.Ws = 0; f.Phase = After;
                        StartValue(g, s, f, n.Child, b, outp);
                        return;
                    default:
                        if (Whitespace(g, s, f, b, outp)) return;
                        f.Ws = 0;
                        if (b == ',') { f.Phase = Next; outp.Add(With(s, f)); }
                        else if (b == '}') outp.Add(Pop(s));
                        return;
                }
            }

            case FrameKind.Array:
            {
                var n = g.Nodes[f.Node];
                if (Whitespace(g, s, f, b, outp)) return;
                f.Ws = 0;
                switch (f.Phase)
                {
                    case Open:
                        if (b == ']') { if (n.Min == 0) outp.Add(Pop(s)); return; }
                        if (n.Max == 0) return;
                        f.Phase = After; f.A = 1;
                        StartValue(g, s, f, n.Child, b, outp);
                        return;
                    case Next:
                        f.Phase = After; f.A++;
                        StartValue(g, s, f, n.Child, b, outp);
                        return;
                    default:
                        if (b == ',' && f.A < n.Max) { f.Phase = Next; outp.Add(With(s, f)); }
                        else if (b == ']' && f.A >= n.Min) outp.Add(Pop(s));
                        return;
                }
            }
        }
    }

    /// <summary>Begins a value of <paramref name="node"/> with its first byte; <paramref name="parent"/> is the updated top frame.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StartValue(JsonGrammar g, in MStack s, in Frame parent, int node, byte b, StackList outp)
    {
        var n = g.Nodes[node];
        switch (n.Kind)
        {
            case NodeKind.Union:
                foreach (var a in n.Alts) StartValue(g, s, parent, a, b, outp);
                return;
            case NodeKind.Object:
                if (b == '{') outp.Add(Push(s, parent, new Frame { Kind = FrameKind.Object, Node = node }));
                return;
            case NodeKind.FreeObject:
                if (b == '{') outp.Add(Push(s, parent, new Frame { Kind = FrameKind.FreeObject, Node = node }));
                return;
            case NodeKind.Array:
                if (b == '[') outp.Add(Push(s, parent, new Frame { Kind = FrameKind.Array, Node = node }));
                return;
            case NodeKind.String:
                if (b == '"') outp.Add(Push(s, parent, new Frame { Kind = FrameKind.String, Node = node }));
                return;
            case NodeKind.Number or NodeKind.Integer:
                if (b == '-') outp.Add(Push(s, parent, new Frame { Kind = FrameKind.Number, Node = node, Phase = NMinus }));
                else if (b == '0') outp.Add(Push(s, parent, new Frame { Kind = FrameKind.Number, Node = node, Phase = NZero }));
                else if (b is >= (byte)'1' and <= (byte)'9') outp.Add(Push(s, parent, new Frame { Kind = FrameKind.Number, Node = node, Phase = NInt, A = 1 }));
                return;
            case NodeKind.Literals:
                foreach (var id in n.Lits)
                    if (g.Literals[id][0] == b) outp.Add(Push(s, parent, new Frame { Kind = FrameKind.Literal, Node = node, A = id, B = 1 }));
                return;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StepString(JsonGrammar g, in MStack s, Frame f, byte b, StackList outp)
    {
        switch (f.Phase)
        {
            case 0:
                if (f.B != 0)
                {
                    // inside a UTF-8 sequence: B = remaining | (first-continuation range << 4)
                    int range = f.B >> 4;
                    bool ok = range switch
                    {
                        1 => b is >= 0xA0 and <= 0xBF,
                        2 => b is >= 0x80 and <= 0x9F,
                        3 => b is >= 0x90 and <= 0xBF,
                        4 => b is >= 0x80 and <= 0x8F,
                        _ => b is >= 0x80 and <= 0xBF,
                    };
                    if (!ok) return;
                    f.B = (f.B & 15) - 1;
                    outp.Add(With(s, f));
                    return;
                }
                if (b == '"')
                {
                    if (f.A >= g.Nodes[f.Node].Min) outp.Add(Pop(s));
                    return;
                }
                if (b < 0x20) return;
                if (f.A >= g.Nodes[f.Node].Max) return;
                if (b == '\\') { f.A++; f.Phase = 1; outp.Add(With(s, f)); return; }
                if (b < 0x80) { f.A++; outp.Add(With(s, f)); return; }
                int rem, r;
                if (b is >= 0xC2 and <= 0xDF) { rem = 1; r = 0; }
                else if (b == 0xE0) { rem = 2; r = 1; }
                else if (b is (>= 0xE1 and <= 0xEC) or 0xEE or 0xEF) { rem = 2; r = 0; }
                else if (b == 0xED) { rem = 2; r = 2; }
                else if (b == 0xF0) { rem = 3; r = 3; }
                else if (b is >= 0xF1 and <= 0xF3) { rem = 3; r = 0; }
                else if (b == 0xF4) { rem = 3; r = 4; }
                else return;
                f.A++; f.B = rem | (r << 4);
                outp.Add(With(s, f));
                return;
            case 1: // after a backslash
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t') { f.Phase = 0; outp.Add(With(s, f)); }
                else if (b == 'u') { f.Phase = 2; f.Aux = 0; outp.Add(With(s, f)); }
                return;
            default: // \uXXXX digits; surrogates (D800-DFFF) are not allowed
                if (!IsHex(b)) return;
                if (f.Phase == 2 && b is (byte)'d' or (byte)'D') f.Aux = 1;
                if (f.Phase == 3 && f.Aux == 1 && b is not (>= (byte)'0' and <= (byte)'7')) return;
                f.Phase = f.Phase == 5 ? (byte)0 : (byte)(f.Phase + 1);
                outp.Add(With(s, f));
                return;
        }
    }

    private static bool IsHex(byte b) => b is (>= (byte)'0' and <= (byte)'9') or (>= (byte)'a' and <= (byte)'f') or (>= (byte)'A' and <= (byte)'F');

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StepNumber(JsonGrammar g, in MStack s, Frame f, byte b, StackList outp)
    {
        bool integer = g.Nodes[f.Node].Kind == NodeKind.Integer;
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        switch (f.Phase)
        {
            case NMinus:
                if (b == '0') { f.Phase = NZero; outp.Add(With(s, f)); }
                else if (digit) { f.Phase = NInt; f.A = 1; outp.Add(With(s, f)); }
                return;
            case NZero or NInt:
                if (digit && f.Phase == NInt && f.A < JsonGrammar.MaxIntDigits) { f.A++; outp.Add(With(s, f)); return; }
                if (!integer && b == '.') { f.Phase = NDot; outp.Add(With(s, f)); return; }
                if (!integer && b is (byte)'e' or (byte)'E') { f.Phase = NE; outp.Add(With(s, f)); return; }
                break;
            case NDot:
                if (digit) { f.Phase = NFrac; f.A = 1; outp.Add(With(s, f)); }
                return;
            case NFrac:
                if (digit && f.A < JsonGrammar.MaxFracDigits) { f.A++; outp.Add(With(s, f)); return; }
                if (b is (byte)'e' or (byte)'E') { f.Phase = NE; outp.Add(With(s, f)); return; }
                break;
            case NE:
                if (b is (byte)'+' or (byte)'-') { f.Phase = NESign; outp.Add(With(s, f)); }
                else if (digit) { f.Phase = NExp; f.A = 1; outp.Add(With(s, f)); }
                return;
            case NESign:
                if (digit) { f.Phase = NExp; f.A = 1; outp.Add(With(s, f)); }
                return;
            default: // NExp
                if (digit && f.A < JsonGrammar.MaxExpDigits) { f.A++; outp.Add(With(s, f)); return; }
                break;
        }
        if (digit) return; // too many digits
        Step(g, Pop(s), b, outp); // the number is complete; the byte belongs to the parent
    }

    /// <summary>Whether the stack can end here: every open frame is a complete number or literal, down to a finished root.</summary>
    public static bool CanFinish(JsonGrammar g, MStack s)
    {
        while (true)
        {
            var f = s.Top;
            switch (f.Kind)
            {
                case FrameKind.Root: return f.Phase == 1;
                case FrameKind.Number when f.Phase is NZero or NInt or NFrac or NExp: s = Pop(s); continue;
                case FrameKind.Literal when f.B == g.Literals[f.A].Length: s = Pop(s); continue;
                default: return false;
            }
        }
    }
}

/// <summary>A position in a <see cref="JsonGrammar"/>: the set of live alternative stacks. Mutable.</summary>
internal sealed class JsonState
{
    private readonly JsonGrammar g;
    internal StackList Current = new();
    private StackList scratch = new();

    public JsonState(JsonGrammar grammar)
    {
        g = grammar;
        Current.Add(JsonMachine.Initial(g));
    }

    public JsonGrammar Grammar => g;

    /// <summary>Consumes one byte; false (state unchanged) when no alternative accepts it.</summary>
    public bool Advance(byte b)
    {
        scratch.Clear();
        for (int i = 0; i < Current.Count; i++) JsonMachine.Step(g, Current.Items[i], b, scratch);
        if (scratch.Count == 0) return false;
        (Current, scratch) = (scratch, Current);
        return true;
    }

    public bool IsComplete
    {
        get
        {
            for (int i = 0; i < Current.Count; i++) if (JsonMachine.CanFinish(g, Current.Items[i])) return true;
            return false;
        }
    }
}
