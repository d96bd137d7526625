# Aggregate streaming throughput of `openweights serve`: N concurrent streaming chat requests, completion tokens / wall time.
# usage: python3 bench/serve_streams.py PORT STREAMS MAX_TOKENS   (model id: the served file name without .gguf)
import json, sys, threading, time, urllib.request
port, n, max_tokens = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
counts = [0]*n
def run(i):
    body = json.dumps({"model": sys.argv[4] if len(sys.argv) > 4 else "smollm2-135m-q8_0", "stream": True, "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
        "stream_options": {"include_usage": True}, "ignore_eos": True,
        "messages": [{"role": "user", "content": f"client {i}: tell me a story"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        for line in r:
            line = line.decode().strip()
            if line.startswith("data: {"):
                d = json.loads(line[6:])
                if d.get("usage"): counts[i] = d["usage"]["completion_tokens"]
t = time.time()
ths = [threading.Thread(target=run, args=(i,)) for i in range(n)]
[x.start() for x in ths]; [x.join() for x in ths]
dt = time.time() - t
print(f"streams={n} tokens={sum(counts)} seconds={dt:.2f} aggregate_tok_s={sum(counts)/dt:.1f}")
