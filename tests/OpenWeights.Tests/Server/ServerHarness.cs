using System.ClientModel;
using System.ClientModel.Primitives;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenAI;
using OpenWeights.Server;

namespace OpenWeights.Tests.Server;

/// <summary>The server in-process (TestServer) through WebApplicationFactory.</summary>
public sealed class OwFactory(ServerOptions options) : WebApplicationFactory<OwFactory>
{
    public ServerOptions Options { get; } = options;

    protected override IHostBuilder CreateHostBuilder() => Host.CreateDefaultBuilder()
        .ConfigureLogging(l => l.ClearProviders())
        .ConfigureWebHostDefaults(w => w
            .ConfigureServices(s => s.AddOpenWeightsServer(Options))
            .Configure(app => app.UseOpenWeightsServer()));

    // the content root is the test output folder (WebApplicationFactory would look for a project folder)
    protected override void ConfigureWebHost(IWebHostBuilder builder) => builder.UseContentRoot(AppContext.BaseDirectory);

    public ModelHost ModelHost => Services.GetRequiredService<ModelHost>();

    public OpenAIClientOptions SdkOptions() => SdkOptions(CreateClient(), new Uri("http://localhost/v1"));

    public static OpenAIClientOptions SdkOptions(HttpClient http, Uri endpoint) => new()
    {
        Endpoint = endpoint,
        Transport = new HttpClientPipelineTransport(http),
        RetryPolicy = new ClientRetryPolicy(0),
        NetworkTimeout = TimeSpan.FromSeconds(60),
    };
}

/// <summary>The server on a real Kestrel port on 127.0.0.1.</summary>
public sealed class KestrelServer : IAsyncDisposable
{
    public WebApplication App { get; }
    public Uri BaseUri { get; }
    public ModelHost ModelHost => App.Services.GetRequiredService<ModelHost>();

    private KestrelServer(WebApplication app, Uri uri) { App = app; BaseUri = uri; }

    public static async Task<KestrelServer> StartAsync(ServerOptions options)
    {
        var app = OpenWeightsServer.Build(options with { Port = 0 }, callerHandlesSignals: true);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new KestrelServer(app, new Uri(address));
    }

    public OpenAIClientOptions SdkOptions() => OwFactory.SdkOptions(new HttpClient { Timeout = TimeSpan.FromSeconds(60) }, new Uri(BaseUri, "/v1"));

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

public static class Creds
{
    public static ApiKeyCredential Key(string k = "unused") => new(k);
}
