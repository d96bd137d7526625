using System.Text;

namespace OpenWeights.Cli.Commands;

/// <summary>Where the chat loop reads its lines: a terminal line editor, or a plain reader (pipes, files, tests).</summary>
public interface ILineSource
{
    /// <summary>Shows <paramref name="prompt"/> and reads a line; null at the end of input; <see cref="LineEditor.Interrupted"/> for Ctrl-C.</summary>
    Task<string?> ReadLineAsync(string prompt, CancellationToken ct);
}

/// <summary>Lines from a reader (stdin redirected, or a test's script): writes the prompt, reads with ReadLine.</summary>
public sealed class ReaderLineSource(TextReader input, TextWriter output) : ILineSource
{
    public async Task<string?> ReadLineAsync(string prompt, CancellationToken ct)
    {
        output.Write(prompt);
        output.Flush();
        return await input.ReadLineAsync(ct);
    }
}

/// <summary>
/// A small line editor over Console.ReadKey for a terminal: Left/Right, Home/End (Ctrl-A/Ctrl-E), Backspace/Delete,
/// Ctrl-U/Ctrl-K/Ctrl-W, Up/Down through earlier lines, Ctrl-D at an empty line ends input, Ctrl-C returns
/// <see cref="Interrupted"/> on an empty line and clears a line with text. Redraws the line with ANSI sequences; given the
/// terminal's width, a line longer than a row wraps and is redrawn from its first row.
/// </summary>
/// <param name="width">the terminal's columns (0 or null: unknown, the line is redrawn on its current row only)</param>
public sealed class LineEditor(Func<ConsoleKeyInfo> readKey, TextWriter output, Func<int>? width = null) : ILineSource
{
    /// <summary>Returned for Ctrl-C at an empty line (compare with ReferenceEquals).</summary>
    public static readonly string Interrupted = new('\u0003', 1);

    private readonly List<string> history = [];
    public IReadOnlyList<string> History => history;

    /// <summary>The editor on the process's terminal; Ctrl-C is read as a key while a line is edited, a signal otherwise.</summary>
    public static LineEditor ForConsole(TextWriter output) => new(() =>
    {
        bool old = Console.TreatControlCAsInput;
        Console.TreatControlCAsInput = true;
        try { return Console.ReadKey(intercept: true); }
        finally { Console.TreatControlCAsInput = old; }
    }, output, () => { try { return Console.WindowWidth; } catch (IOException) { return 0; } });

    public Task<string?> ReadLineAsync(string prompt, CancellationToken ct) => Task.FromResult(ReadLine(prompt, ct));

    public string? ReadLine(string prompt, CancellationToken ct = default)
    {
        var line = new StringBuilder();
        int cursor = 0;
        int browse = history.Count; // history.Count = the line being typed
        string draft = "";
        cursorRow = 0;
        output.Write(prompt);
        output.Flush();
        while (!ct.IsCancellationRequested)
        {
            var k = readKey();
            bool ctrl = (k.Modifiers & ConsoleModifiers.Control) != 0;
            switch (k.Key)
            {
                case ConsoleKey.Enter:
                    MoveToEnd(prompt, line);
                    output.Write("\r\n");
                    output.Flush();
                    string done = line.ToString();
                    if (done.Trim().Length > 0 && (history.Count == 0 || history[^1] != done)) history.Add(done);
                    return done;
                case ConsoleKey.C when ctrl:
                    if (line.Length == 0) { output.Write("^C\r\n"); output.Flush(); return Interrupted; }
                    line.Clear(); cursor = 0; browse = history.Count;
                    break;
                case ConsoleKey.D when ctrl:
                    if (line.Length == 0) { output.Write("\r\n"); output.Flush(); return null; }
                    if (cursor < line.Length) line.Remove(cursor, 1);
                    break;
                case ConsoleKey.Backspace:
                    if (cursor > 0) { line.Remove(cursor - 1, 1); cursor--; }
                    break;
                case ConsoleKey.Delete:
                    if (cursor < line.Length) line.Remove(cursor, 1);
                    break;
                case ConsoleKey.LeftArrow:
                case ConsoleKey.B when ctrl:
                    if (cursor > 0) cursor--;
                    break;
                case ConsoleKey.RightArrow:
                case ConsoleKey.F when ctrl:
                    if (cursor < line.Length) cursor++;
                    break;
                case ConsoleKey.Home:
                case ConsoleKey.A when ctrl:
                    cursor = 0;
                    break;
                case ConsoleKey.End:
                case ConsoleKey.E when ctrl:
                    cursor = line.Length;
                    break;
                case ConsoleKey.U when ctrl:
                    line.Remove(0, cursor); cursor = 0;
                    break;
                case ConsoleKey.K when ctrl:
                    line.Remove(cursor, line.Length - cursor);
                    break;
                case ConsoleKey.W when ctrl:
                {
                    int start = cursor;
                    while (start > 0 && line[start - 1] == ' ') start--;
                    while (start > 0 && line[start - 1] != ' ') start--;
                    line.Remove(start, cursor - start); cursor = start;
                    break;
                }
                case ConsoleKey.UpArrow:
                case ConsoleKey.P when ctrl:
                    if (browse > 0)
                    {
                        if (browse == history.Count) draft = line.ToString();
                        browse--;
                        line.Clear().Append(history[browse]); cursor = line.Length;
                    }
                    break;
                case ConsoleKey.DownArrow:
                case ConsoleKey.N when ctrl:
                    if (browse < history.Count)
                    {
                        browse++;
                        line.Clear().Append(browse == history.Count ? draft : history[browse]); cursor = line.Length;
                    }
                    break;
                default:
                    if (k.KeyChar >= ' ' && k.KeyChar != '\u007f' && !ctrl) { line.Insert(cursor, k.KeyChar); cursor++; }
                    else if (k.KeyChar == '\t') { line.Insert(cursor, "    "); cursor += 4; }
                    else if (k.KeyChar == '\u007f' && cursor > 0) { line.Remove(cursor - 1, 1); cursor--; } // DEL sent as Backspace
                    break;
            }
            Redraw(prompt, line, cursor);
        }
        return null;
    }

    private int cursorRow; // the row of the cursor, counted from the prompt's row

    private void Redraw(string prompt, StringBuilder line, int cursor)
    {
        int w = width?.Invoke() ?? 0;
        if (w <= 0)
        {
            output.Write('\r');
            output.Write(prompt);
            output.Write(line.ToString());
            output.Write("\u001b[K");
            int back = line.Length - cursor;
            if (back > 0) output.Write($"\u001b[{back}D");
            output.Flush();
            return;
        }
        if (cursorRow > 0) output.Write($"\u001b[{cursorRow}A");
        output.Write('\r');
        output.Write(prompt);
        output.Write(line.ToString());
        int end = prompt.Length + line.Length;
        if (end > 0 && end % w == 0) output.Write(" \r"); // leave the pending wrap: the cursor goes to the next row's start
        output.Write("\u001b[J");
        int endRow = end / w, row = (prompt.Length + cursor) / w, col = (prompt.Length + cursor) % w;
        if (endRow > row) output.Write($"\u001b[{endRow - row}A");
        output.Write('\r');
        if (col > 0) output.Write($"\u001b[{col}C");
        cursorRow = row;
        output.Flush();
    }

    /// <summary>Puts the cursor after the line's last character (before Enter prints the line break).</summary>
    private void MoveToEnd(string prompt, StringBuilder line)
    {
        int w = width?.Invoke() ?? 0;
        if (w <= 0) return;
        int endRow = (prompt.Length + line.Length) / w;
        if (endRow > cursorRow) output.Write($"\u001b[{endRow - cursorRow}B");
        cursorRow = endRow;
    }
}
