using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace OpenWeights.Server;

/// <summary>
/// How errors look in the API a request speaks (an HttpContext feature). The error middleware
/// (<see cref="OpenAiEndpoints.UseOpenAiErrors"/>) catches every failure, as for the OpenAI API, and writes it through the
/// request's dialect when it has one; requests without one get OpenAI's shape.
/// </summary>
internal interface IErrorDialect
{
    /// <summary>The error as a whole response (nothing was sent yet).</summary>
    Task WriteError(HttpContext ctx, ApiException e);

    /// <summary>The error as the last event of a stream already under way; a client gone meanwhile is no failure.</summary>
    Task WriteInStream(HttpContext ctx, ApiException e);
}

/// <summary>Picks the dialect of each request by its path, before the error middleware runs.</summary>
public static class ApiDialects
{
    /// <summary>
    /// /v1/messages... speaks Anthropic (errors {"type":"error",...}; the key may come as <c>x-api-key</c>), /api/... and
    /// GET / speak Ollama (errors {"error":"..."}); /v1/responses... is OpenAI's Responses API (OpenAI's errors, an error
    /// event in a stream); everything else stays OpenAI.
    /// </summary>
    public static IApplicationBuilder UseApiDialects(this IApplicationBuilder app) => app.Use((ctx, next) =>
    {
        string path = ctx.Request.Path.Value ?? "";
        if (AnthropicEndpoints.Owns(path))
        {
            ctx.Features.Set<IErrorDialect>(AnthropicEndpoints.Errors);
            // Anthropic's clients send the key as x-api-key; the one API-key check reads the bearer form
            if (string.IsNullOrEmpty(ctx.Request.Headers.Authorization) && ctx.Request.Headers["x-api-key"] is { Count: > 0 } k && !string.IsNullOrEmpty(k[0]))
                ctx.Request.Headers.Authorization = "Bearer " + k[0];
        }
        else if (OllamaEndpoints.Owns(path)) ctx.Features.Set<IErrorDialect>(OllamaEndpoints.Errors);
        else if (ResponsesEndpoints.Owns(path)) ctx.Features.Set<IErrorDialect>(ResponsesEndpoints.Errors); // OpenAI's errors; in a stream, an error event
        return next(ctx);
    });

    /// <summary>Writes one piece of a stream and flushes it.</summary>
    internal static async Task WriteFlushed(HttpContext ctx, string text, CancellationToken ct)
    {
        await ctx.Response.WriteAsync(text, ct);
        await ctx.Response.Body.FlushAsync(ct);
    }

    /// <summary>Starts a streamed response of <paramref name="contentType"/> (unbuffered).</summary>
    internal static async Task BeginStream(HttpContext ctx, string contentType)
    {
        ctx.Response.ContentType = contentType;
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await ctx.Response.StartAsync(ctx.RequestAborted);
    }

    /// <summary>The last event of a broken stream, written if the client is still there.</summary>
    internal static async Task WriteLast(HttpContext ctx, string text)
    {
        try { await WriteFlushed(ctx, text, CancellationToken.None); }
        catch (Exception) when (ctx.RequestAborted.IsCancellationRequested) { /* client gone meanwhile */ }
    }
}
