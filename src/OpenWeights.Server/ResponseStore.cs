using OpenWeights.Inference.Chat;

namespace OpenWeights.Server;

/// <summary>
/// Responses kept for GET /v1/responses/{id} and <c>previous_response_id</c>, in memory for the server's lifetime: at most
/// <see cref="Capacity"/>, the least recently used forgotten first. Each holds the response object and the conversation it
/// ends (the turns before it, its input and its output, without instructions: a later response does not inherit them).
/// </summary>
public sealed class ResponseStore(int capacity)
{
    /// <summary>A stored response: its JSON (as returned), its input items (JSON, each with an id) and the conversation up to and including its output.</summary>
    internal sealed record Entry(string Id, string ResponseJson, string InputItemsJson, IReadOnlyList<ChatTurn> Conversation);

    private readonly object gate = new();
    private readonly Dictionary<string, LinkedListNode<Entry>> byId = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> order = new(); // most recently used first

    public int Capacity { get; } = capacity >= 0 ? capacity : throw new OpenWeightsException($"the response store's capacity {capacity} must be >= 0");

    public int Count { get { lock (gate) return byId.Count; } }

    internal void Add(Entry e)
    {
        if (Capacity == 0) return;
        lock (gate)
        {
            if (byId.Remove(e.Id, out var old)) order.Remove(old);
            byId[e.Id] = order.AddFirst(e);
            while (byId.Count > Capacity)
            {
                var last = order.Last!;
                order.RemoveLast();
                byId.Remove(last.Value.Id);
            }
        }
    }

    /// <summary>The entry, marked as just used; null when unknown or forgotten.</summary>
    internal Entry? Get(string id)
    {
        lock (gate)
        {
            if (!byId.TryGetValue(id, out var node)) return null;
            order.Remove(node);
            order.AddFirst(node);
            return node.Value;
        }
    }

    internal bool Remove(string id)
    {
        lock (gate)
        {
            if (!byId.Remove(id, out var node)) return false;
            order.Remove(node);
            return true;
        }
    }
}
