using System.CommandLine;
using OpenWeights.Formats.Gguf;
using OpenWeights.Tokenizers;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights tokenize MODEL "text"`: token ids and pieces, to count tokens.</summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var text = new Argument<string>("text") { Description = "Text to tokenize" };
        var json = CommonOptions.Json();
        var noSpecial = new Option<bool>("--no-bos") { Description = "Do not add BOS/EOS tokens" };
        var special = new Option<bool>("--special") { Description = "Recognise special tokens written in the text" };
        var cmd = new Command("tokenize", "Print the token ids and pieces of a text") { model, text, json, noSpecial, special };
        cmd.SetAction(pr =>
        {
            var o = pr.InvocationConfiguration.Output;
            using var f = CommonOptions.OpenSource(CommonOptions.ResolveModel(pr.GetValue(model)!));
            var tok = Tokenizer.FromGguf(f);
            var ids = tok.Encode(pr.GetValue(text) ?? "", addSpecial: !pr.GetValue(noSpecial), parseSpecial: pr.GetValue(special));
            if (pr.GetValue(json))
                CliJson.Write(o, new { count = ids.Length, tokens = ids.Select(i => new { id = i, piece = tok.TokenPiece(i), text = tok.Decode([i]) }).ToArray() });
            else
            {
                foreach (var i in ids) o.WriteLine($"{i,8} {Visible(tok.TokenPiece(i))}");
                o.WriteLine($"{ids.Length} tokens");
            }
            return 0;
        });
        return cmd;
    }

    private static string Visible(string s) =>
        "'" + string.Concat(s.Select(c => c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", _ when char.IsControl(c) => $"\\x{(int)c:x2}", _ => c.ToString() })) + "'";
}
