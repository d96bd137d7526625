using System.Text.RegularExpressions;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tests.Cli;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>Each family's tiny preset carries a chat template whose markers are its vocabulary's special tokens.</summary>
public class FamilyChatTemplateTests
{
    [Theory]
    [MemberData(nameof(TinyFamilies.All), MemberType = typeof(TinyFamilies))]
    public void TemplateMarkersAreControlTokensAndTheTurnEndEndsGeneration(string arch)
    {
        using var m = DecoderModel.Load(TinyFamilies.Model(arch));
        var tok = Tokenizer.FromGguf(m.Source);
        var f = new ChatFormatter(tok);
        string rendered = f.Render([ChatTurn.User("hi"), ChatTurn.Assistant("hello"), ChatTurn.User("bye")]);
        var markers = Regex.Matches(rendered, @"<\|?[a-z_]+\|?>").Select(x => x.Value).Distinct().ToList();
        Assert.True(markers.Count >= 2, $"{arch}: no turn markers in {rendered}");
        foreach (var marker in markers)
        {
            int id = tok.TokenToId(marker);
            // gpt-oss's harmony markers <|start|>, <|message|>, <|channel|>, <|constrain|> are user-defined tokens, as
            // llama.cpp marks them (so that they are rendered in the output, where the harmony parser reads them)
            bool special = id >= 0 && (tok.IsControl(id) || (tok.GetTokenAttributes(id) & TokenAttributes.UserDefined) != 0);
            Assert.True(special, $"{arch}: the template writes {marker}, which is not a special token of the vocabulary");
            Assert.Equal([id], tok.Encode(marker, addSpecial: false, parseSpecial: true));
        }
        // what closes the assistant's turn ("hello") is a token that ends generation
        string end = Regex.Match(rendered[(rendered.IndexOf("hello", StringComparison.Ordinal) + 5)..], @"<\|?[a-z_]+\|?>").Value;
        int endId = tok.TokenToId(end);
        Assert.True(tok.EndOfGeneration.Contains(endId) || f.StopTokens.Contains(endId), $"{arch}: the turn end {end} does not end generation");
    }
}
