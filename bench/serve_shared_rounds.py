# Prompt cache under concurrency (issue 16): a warm request with a long system prompt, then two rounds of N concurrent
# questions sharing it; prints each round's request times and cached_tokens, and the server's prompt cache metrics.
# usage: python3 bench/serve_shared_rounds.py MODEL.gguf [N=32] [PORT=18777]   (not a timed test; BENCHMARKS.md)
import json, subprocess, sys, threading, time, urllib.request, os
model = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 32; port = int(sys.argv[3]) if len(sys.argv) > 3 else 18777
dll = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src/OpenWeights.Cli/bin/Release/net10.0/OpenWeights.Cli.dll")
p = subprocess.Popen(["dotnet", dll, "serve", model, "--port", str(port), "--parallel", str(n), "--ctx", "4096", "--threads", "2"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        try: urllib.request.urlopen(f"http://127.0.0.1:{port}/health"); break
        except Exception: time.sleep(0.3)
    system = " ".join(f"Rule {i}: keep records and cite the clause." for i in range(100))
    def ask(q, out, i):
        body = json.dumps({"messages": [{"role": "system", "content": system}, {"role": "user", "content": q}], "max_tokens": 4, "temperature": 0}).encode()
        t = time.time()
        r = json.load(urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})))
        out[i] = (round(time.time() - t, 2), r["usage"])
    o = [None]; ask("warm up", o, 0); print("first request:", o[0])
    for rnd in (1, 2):
        o = [None] * n
        ths = [threading.Thread(target=ask, args=(f"round {rnd} question {i}?", o, i)) for i in range(n)]
        [t.start() for t in ths]; [t.join() for t in ths]
        times = sorted(x[0] for x in o); cached = sorted(x[1]["prompt_tokens_details"]["cached_tokens"] for x in o)
        print(f"round {rnd}: {n} at once, seconds {times[0]}..{times[-1]}, cached_tokens {cached[0]}..{cached[-1]} of {o[0][1]['prompt_tokens']}")
    m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    print("\n".join(l for l in m.splitlines() if l.startswith(("openweights_prompt_cache", "openweights_kv"))))
finally:
    p.terminate(); p.wait()
