using System.Collections.Frozen;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace OpenWeights.Server;

/// <summary>
/// The chat page: GET / for a browser (a request that accepts text/html; other clients still get Ollama's "Ollama is
/// running"), its script, style and icon under /chat/. The files are embedded resources (ChatPage/*): nothing is loaded
/// from anywhere else, and the Content-Security-Policy says so to the browser (same origin only, no inline script or
/// style, and with Trusted Types no HTML string may reach the DOM: the page builds every node itself). The page and its
/// files need no API key and are served while the model loads; the page then talks to /v1 with the key the person gives it.
/// </summary>
public static class ChatPage
{
    /// <summary>The folder of the page's files.</summary>
    public const string AssetPrefix = "/chat/";

    /// <summary>
    /// Same origin only; no inline script or style; no plugins, frames, forms or base URL; Trusted Types with no policy, so
    /// that any assignment of an HTML string to the DOM (innerHTML and the like) throws.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'self'; connect-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

    private sealed record Asset(byte[] Bytes, string ContentType);

    // file name -> bytes and content type; index.html is the page at /
    private static readonly FrozenDictionary<string, Asset> Assets = LoadAssets();

    private static FrozenDictionary<string, Asset> LoadAssets()
    {
        var assembly = typeof(ChatPage).Assembly;
        const string prefix = "OpenWeights.Server.ChatPage.";
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (string name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)))
        {
            using var s = assembly.GetManifestResourceStream(name)!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            string file = name[prefix.Length..];
            assets[file] = new Asset(ms.ToArray(), Path.GetExtension(file) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                ".svg" => "image/svg+xml",
                _ => "application/octet-stream",
            });
        }
        return assets.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>Paths served without an API key and before the model is ready: the page (GET or HEAD of / and /chat/...).</summary>
    public static bool IsPublic(HttpRequest request) =>
        (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method))
        && (request.Path.Value is "/" || (request.Path.Value ?? "").StartsWith(AssetPrefix, StringComparison.Ordinal));

    /// <summary>Whether GET / comes from a browser (it accepts text/html), rather than an Ollama client probing the server.</summary>
    public static bool WantsPage(HttpRequest request) =>
        request.GetTypedHeaders().Accept.Any(a => a.MediaType.Equals("text/html", StringComparison.OrdinalIgnoreCase));

    /// <summary>The page itself (index.html).</summary>
    public static IResult Page(HttpContext ctx) => Serve(ctx, "index.html");

    /// <summary>Maps GET /chat/{file}: the page's script, style and icon.</summary>
    public static IEndpointRouteBuilder MapChatPage(this IEndpointRouteBuilder app)
    {
        app.MapGet(AssetPrefix + "{file}", (string file, HttpContext ctx) => Serve(ctx, file));
        return app;
    }

    private static IResult Serve(HttpContext ctx, string file)
    {
        if (!Assets.TryGetValue(file, out var asset))
            throw new ApiException(404, $"no file {OpenAiRequest.Printable(file, 100)} in the chat page", code: "unknown_url");
        var h = ctx.Response.Headers;
        h.ContentSecurityPolicy = ContentSecurityPolicy;
        h.XContentTypeOptions = "nosniff";
        h["Referrer-Policy"] = "no-referrer";
        h.CacheControl = "no-cache"; // a new server version's page is picked up at once
        return Results.Bytes(asset.Bytes, asset.ContentType);
    }
}
