using Microsoft.Extensions.AI;
using OpenWeights.Extensions.AI;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers a local model as the application's <see cref="IChatClient"/>.</summary>
public static class OpenWeightsServiceCollectionExtensions
{
    /// <summary>
    /// Registers an <see cref="OpenWeightsChatClient"/> for <paramref name="model"/> (a GGUF file, a Hugging Face checkpoint
    /// folder, a catalog id or org/name[:QUANT] in the local store) as a singleton <see cref="IChatClient"/>, loaded when first
    /// resolved and disposed with the container. Returns Microsoft.Extensions.AI's builder, so middleware composes:
    /// <c>services.AddOpenWeightsChatClient("model.gguf").UseFunctionInvocation().UseLogging();</c>
    /// </summary>
    public static ChatClientBuilder AddOpenWeightsChatClient(this IServiceCollection services, string model,
        Action<OpenWeightsChatClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(model);
        var options = new OpenWeightsChatClientOptions();
        configure?.Invoke(options);
        return services.AddChatClient(_ => OpenWeightsChatClient.Load(model, options));
    }
}
