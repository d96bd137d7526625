using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace OpenWeights.Server;

/// <summary>Builds the OpenAI-compatible server for one model.</summary>
public static class OpenWeightsServer
{
    /// <summary>Registers the model host (loads the model) and the server's settings.</summary>
    public static IServiceCollection AddOpenWeightsServer(this IServiceCollection services, ServerOptions options)
    {
        services.AddSingleton(options);
        services.AddSingleton(_ => new ModelHost(options));
        services.AddRouting();
        services.Configure<KestrelServerOptions>(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            k.AddServerHeader = false;
        });
        return services;
    }

    /// <summary>The request pipeline: errors and API key, then the endpoints.</summary>
    public static IApplicationBuilder UseOpenWeightsServer(this IApplicationBuilder app)
    {
        app.ApplicationServices.GetRequiredService<ModelHost>(); // load the model before the first request
        app.UseOpenAiErrors();
        app.UseRouting();
        app.UseEndpoints(e => e.MapOpenAi());
        return app;
    }

    /// <summary>A Kestrel server listening on options.Host:options.Port (127.0.0.1 unless told otherwise).</summary>
    public static WebApplication Build(ServerOptions options, Action<ILoggingBuilder>? logging = null)
    {
        var address = System.Net.IPAddress.Parse(ResolveHost(options.Host)); // fails before the model loads
        if (options.Port is < 0 or > 65535) throw new OpenWeightsException($"port {options.Port} must be between 0 and 65535");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        builder.Services.AddOpenWeightsServer(options);
        builder.WebHost.UseKestrel(k => k.Listen(address, options.Port));
        var app = builder.Build();
        app.UseOpenWeightsServer();
        return app;
    }

    private static string ResolveHost(string host) => host switch
    {
        "localhost" => "127.0.0.1",
        "*" or "+" => "0.0.0.0",
        _ when System.Net.IPAddress.TryParse(host, out _) => host,
        _ => throw new OpenWeightsException($"--host {host} must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost"),
    };
}
