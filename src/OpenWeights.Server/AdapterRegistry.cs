using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using OpenWeights.Lora;
using OpenWeights.Models;

namespace OpenWeights.Server;

/// <summary>
/// The LoRA adapters one model serves per request, by name: registered at start (<c>serve --lora NAME=PATH[:SCALE]</c>)
/// or at run time (<c>POST /v1/adapters</c>). A request selects one with <c>model: "base:NAME"</c> or an <c>adapter</c>
/// field; its jobs' rows take that adapter's update in the batched pass (<see cref="RoutedAdapters"/>), beside rows with
/// other adapters or none. An adapter that running requests hold cannot be unloaded (409), and an id is never reused, so
/// a slot's cached prefix computed under an unloaded adapter is never mistaken for a new one's.
/// </summary>
public sealed class AdapterRegistry(DecoderModel model)
{
    private sealed class Entry(string name, string path, float scale, int id, string sha256)
    {
        public readonly string Name = name, Path = path, Sha256 = sha256;
        public readonly float Scale = scale;
        public readonly int Id = id;
        public int InUse;
        public readonly long Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    }

    private readonly RoutedAdapters routed = new(model);
    private readonly Dictionary<string, Entry> byName = new(StringComparer.Ordinal);
    private readonly object gate = new();

    /// <summary>A name a request can give after the colon: letters, digits, '.', '_' and '-'.</summary>
    public static bool IsValidName(string name) =>
        name.Length is > 0 and <= 64 && name.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-');

    /// <summary>Loads the adapter at <paramref name="spec"/> (FILE[:SCALE]), checks it against the model and registers it as <paramref name="name"/>.</summary>
    public void Load(string name, string spec)
    {
        if (!IsValidName(name)) throw new ApiException(400, $"the adapter name '{OpenAiRequest.Printable(name, 80)}' must be 1-64 letters, digits, '.', '_' or '-'", "name", "invalid_adapter_name");
        lock (gate)
            if (byName.ContainsKey(name)) throw new ApiException(409, $"an adapter named '{name}' is already loaded; DELETE /v1/adapters/{name} first", "name", "adapter_exists");
        var s = LoraSpec.Parse(spec);
        if (!File.Exists(s.Path) && !Directory.Exists(s.Path))
            throw new ApiException(400, $"the adapter file '{OpenAiRequest.Printable(s.Path, 200)}' does not exist on the server", "path", "adapter_not_found");
        LoraAdapter a;
        try { a = LoraLoader.Load(s.Path, model.Source, model.Config); }
        catch (OpenWeightsException e) { throw new ApiException(400, e.Message, "path", "invalid_adapter"); }
        string sha256 = OpenWeights.Audit.FileDigest.Sha256(s.Path); // what an audit line names it by (cached per file)
        lock (gate)
        {
            if (byName.ContainsKey(name)) throw new ApiException(409, $"an adapter named '{name}' is already loaded", "name", "adapter_exists");
            byName[name] = new Entry(name, Path.GetFullPath(s.Path), s.Scale, routed.Add(a, s.Scale), sha256);
        }
    }

    /// <summary>Unloads <paramref name="name"/>; 404 when unknown, 409 while a request uses it.</summary>
    public void Unload(string name)
    {
        lock (gate)
        {
            if (!byName.TryGetValue(name, out var e)) throw new ApiException(404, $"no adapter named '{OpenAiRequest.Printable(name, 80)}' is loaded", code: "adapter_not_found");
            if (e.InUse > 0) throw new ApiException(409, $"the adapter '{name}' is in use by {e.InUse} running request(s); retry when they are done", code: "adapter_in_use");
            byName.Remove(name);
            routed.Remove(e.Id);
        }
    }

    /// <summary>The adapter with id <paramref name="id"/> as an audit line records it (path, scale, SHA-256); null: none or unloaded.</summary>
    public OpenWeights.Audit.AuditAdapter? AuditOf(int id)
    {
        if (id == 0) return null;
        lock (gate)
            return byName.Values.FirstOrDefault(e => e.Id == id) is { } e ? new OpenWeights.Audit.AuditAdapter(e.Path, e.Scale, e.Sha256) : null;
    }

    public bool Contains(string name) { lock (gate) return byName.ContainsKey(name); }

    public IReadOnlyList<string> Names { get { lock (gate) return [.. byName.Keys.Order(StringComparer.Ordinal)]; } }

    /// <summary>Holds <paramref name="name"/> for one request (it cannot be unloaded meanwhile); dispose the lease when the request is over.</summary>
    public AdapterLease Acquire(string name)
    {
        lock (gate)
        {
            if (!byName.TryGetValue(name, out var e))
                throw new ApiException(404, $"the adapter '{OpenAiRequest.Printable(name, 80)}' is not loaded{(byName.Count == 0 ? "" : $" (loaded: {string.Join(", ", byName.Keys.Order(StringComparer.Ordinal))})")}", "model", "adapter_not_found");
            e.InUse++;
            return new AdapterLease(this, e.Name, e.Id);
        }
    }

    internal void Release(string name)
    {
        lock (gate) if (byName.TryGetValue(name, out var e) && e.InUse > 0) e.InUse--;
    }

    /// <summary>Every adapter as JSON: name, path, scale, requests using it.</summary>
    public JsonArray ToJson()
    {
        lock (gate)
            return new JsonArray([.. byName.Values.OrderBy(e => e.Name, StringComparer.Ordinal).Select(e => (JsonNode)new JsonObject
            {
                ["name"] = e.Name, ["path"] = e.Path, ["scale"] = e.Scale, ["in_use"] = e.InUse, ["created"] = e.Created,
            })]);
    }
}

/// <summary>One request's hold on an adapter; its id goes to the request's jobs.</summary>
public sealed class AdapterLease(AdapterRegistry registry, string name, int id) : IDisposable
{
    private int released;
    public string Name { get; } = name;
    public int Id { get; } = id;

    internal const string ItemKey = "openweights.adapter";

    /// <summary>The adapter id of the request's lease (0: none).</summary>
    public static int IdOf(HttpContext ctx) => ctx.Items.TryGetValue(ItemKey, out var o) && o is AdapterLease l ? l.Id : 0;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref released, 1) == 0) registry.Release(Name);
    }
}
