using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>
/// A host application that embeds the server with <c>app.Run()</c> keeps ASP.NET's console lifetime (Ctrl-C drains the
/// server); only a caller that owns the signals (`openweights serve`) turns it off.
/// </summary>
public class ServerEmbeddingHostTests
{
    [Fact]
    public async Task BuildKeepsTheConsoleLifetimeUnlessTheCallerHandlesSignals()
    {
        var options = new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 128, Threads = 1, Port = 0 };
        await using (var embedded = OpenWeightsServer.Build(options))
            Assert.Equal("ConsoleLifetime", embedded.Services.GetRequiredService<IHostLifetime>().GetType().Name);
        await using (var serve = OpenWeightsServer.Build(options, callerHandlesSignals: true))
            Assert.NotEqual("ConsoleLifetime", serve.Services.GetRequiredService<IHostLifetime>().GetType().Name);
    }
}
