using OpenWeights.Models;

namespace OpenWeights.Catalog;

/// <summary>Whether the engine can run a catalog model, and if not, why (one line for the user).</summary>
/// <param name="Runs">True when the engine's architecture registry has the model's architecture and the engine implements
/// what the model needs.</param>
/// <param name="Architecture">The model's GGUF architecture name (llama, qwen2, gemma3...), or null when the catalog does not name it.</param>
/// <param name="Reason">Why it cannot run; null when it runs.</param>
public sealed record EngineSupport(bool Runs, string? Architecture, string? Reason)
{
    /// <summary>
    /// Derived from <see cref="Architectures.Supported"/>, the registry the model loader uses, so a family added there is
    /// runnable here without touching the catalog. The one rule on top: a family without experts (<see cref="ArchitectureSpec.Experts"/>) is a dense
    /// decoder, so a llama-architecture model with experts (Mixtral, whose GGUF files also say <c>llama</c>) does not run.
    /// </summary>
    public static EngineSupport For(CatalogModel m)
    {
        string? arch = m.Architecture?.GgufArchitecture;
        if (arch is null) return new(false, null, "the catalog does not name its architecture, so the engine cannot tell whether it runs it");
        var spec = Architectures.Supported.FirstOrDefault(a => a.Name == arch);
        if (spec is null)
            return new(false, arch, $"the engine cannot run architecture {arch} yet (it runs {string.Join(", ", Architectures.Supported.Select(a => a.Name))})");
        if (!spec.Experts && m.Architecture!.Moe is not null)
            return new(false, arch, $"the engine cannot run mixture-of-experts {arch} models yet (dense models only)");
        return new(true, arch, null);
    }

    /// <summary>The reason as a sentence tail after "fits in memory, but ...", e.g. "the engine cannot run architecture gemma3 yet".</summary>
    public override string ToString() => Runs ? $"runs ({Architecture})" : Reason!;
}
