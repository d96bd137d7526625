#!/usr/bin/env python3
# Many users on one box (issue 16): `openweights serve` under concurrent streaming chat requests, measured from the client.
#   1. Shared system prompt: time to first token (TTFT) of a first request with a long system prompt vs later requests that
#      share it (different user messages), one at a time, then N at once after a warm first request (two rounds: the
#      scheduler reuses a prefix only within the slot that holds it, so round 1 shows one warm slot, round 2 all of them).
#   2. Concurrency sweep at 1, 4, 16, 32 streams: aggregate decode tokens/s, TTFT p50/p99, inter-token latency p50/p99.
# Python 3 standard library only. Starts the server itself (the Release build of OpenWeights.Cli; builds nothing), waits for
# GET /health, stops it with SIGTERM. Progress on stderr; the table (or --json) on stdout. A random-weight model (synth)
# streams no text (its tokens are mostly reserved control tokens): --favor-text auto then biases ordinary text tokens up.
#
# usage: python3 bench/serve_concurrency.py MODEL.gguf [--port P] [--streams 1,4,16,32] [--max-tokens 64] [--ctx 4096]
#            [--system-tokens 2000] [--later 4] [--shared-streams N] [--parallel N | --restart-each] [--threads T] [--json]
#        python3 bench/serve_concurrency.py --url http://127.0.0.1:8080 ...   (a server already running: nothing started)
import argparse, http.client, json, os, random, signal, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DLL = os.path.join(REPO, "src/OpenWeights.Cli/bin/Release/net10.0/OpenWeights.Cli.dll")
CORPUS = os.path.join(REPO, "..", "shared", "testdata", "corpus", "war-and-peace.txt")
# end-of-reply markers of the common chat templates: banned with logit_bias -100 so that every reply runs to max_tokens
# (the OpenAI endpoint of `openweights serve` does not read ignore_eos; it is sent anyway for servers that do)
END_MARKERS = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<end_of_turn>", "<eos>", "</s>",
               "<|end|>", "<|return|>", "<|call|>", "<|end▁of▁sentence|>"]
TOPICS = ["a lighthouse keeper", "the river in winter", "a lost letter", "two brothers", "an old clock", "the first snow",
          "a market town", "a night train", "a gardener", "the last ferry", "a broken bridge", "a quiet library"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {msg}", file=sys.stderr, flush=True)


def percentile(xs, p):
    """Linear interpolation between closest ranks (numpy's default); None for no data."""
    if not xs: return None
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo = int(k); hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ---- the server -------------------------------------------------------------------------------------------------------

class Server:
    """`dotnet OpenWeights.Cli.dll serve MODEL --port P --parallel N --ctx C`, ready once GET /health answers 200."""

    def __init__(self, a, parallel):
        self.port = a.port or free_port()
        self.cmd = ["dotnet", a.dll, "serve", a.model, "--port", str(self.port), "--parallel", str(parallel), "--ctx", str(a.ctx)]
        if a.threads: self.cmd += ["--threads", str(a.threads)]
        self.cmd += a.server_arg
        self.parallel = parallel
        self.keep = a.server_log
        self.log = open(a.server_log, "ab") if a.server_log else tempfile.NamedTemporaryFile(prefix="serve_concurrency.", suffix=".log", delete=False)
        log("starting: " + " ".join(self.cmd) + f"  (log {self.log.name})")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.host = "127.0.0.1"
        t0 = time.time()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with code {self.proc.returncode} before it was ready:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as r:
                    if r.status == 200: break
            except OSError: pass
            if time.time() - t0 > a.ready_timeout:
                self.stop(); raise SystemExit(f"the server was not ready after {a.ready_timeout} s:\n{self.tail()}")
            time.sleep(0.25)
        self.ready_seconds = time.time() - t0
        log(f"ready after {self.ready_seconds:.1f} s on port {self.port}")

    def tail(self, n=20):
        try:
            with open(self.log.name, errors="replace") as f: return "".join(f.readlines()[-n:])
        except OSError: return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log("the server did not stop 30 s after SIGTERM: killing it"); self.proc.kill(); self.proc.wait()
        log(f"server stopped (exit code {self.proc.returncode})")
        self.log.close()
        if not self.keep:
            try: os.unlink(self.log.name)
            except OSError: pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(host, port, path, body=None):
    c = http.client.HTTPConnection(host, port, timeout=120)
    try:
        if body is None: c.request("GET", path)
        else: c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse(); data = r.read()
        if r.status != 200: raise RuntimeError(f"{path}: HTTP {r.status}: {data[:300]!r}")
        return json.loads(data)
    finally: c.close()


def tokenize(a, text, special=False):
    """Token ids and texts of `text` by `openweights tokenize --json` (one process)."""
    cmd = ["dotnet", a.dll, "tokenize", a.model, text, "--no-bos", "--json"] + (["--special"] if special else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0: raise SystemExit(f"openweights tokenize failed: {out.stderr.strip()[:500]}")
    return json.loads(out.stdout)["tokens"]


def text_token_ids(a, words):
    """Ordinary text tokens of the model: those of a piece of the corpus (and printable ASCII) whose text is printable
    on its own (no partial UTF-8, no '<' that a stop marker could begin with)."""
    sample = " ".join(words[:6000]) + " " + "".join(chr(c) for c in range(33, 127) if chr(c) != "<")
    return sorted({t["id"] for t in tokenize(a, sample) if t.get("text") and t["text"].isprintable()
                   and "\ufffd" not in t["text"] and "<" not in t["text"]})


def end_token_ids(a):
    """The model's end-of-reply token ids, by `openweights tokenize --special` of the known markers (one process)."""
    toks = tokenize(a, " ".join(END_MARKERS), special=True)
    return sorted({t["id"] for t in toks if t.get("text") in END_MARKERS or t.get("piece") in END_MARKERS})


# ---- one streaming request ----------------------------------------------------------------------------------------------

def chat_body(a, model_id, user, system=None, seed=0):
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    b = {"model": model_id, "messages": msgs, "stream": True, "stream_options": {"include_usage": True},
         "max_tokens": a.max_tokens, "temperature": a.temperature, "seed": seed, "ignore_eos": True}
    bias = {str(i): a.favor_bias for i in a.favor or []}
    bias.update({str(i): -100 for i in a.ban})
    if bias: b["logit_bias"] = bias
    return b


def stream_chat(host, port, body, barrier=None, allow_empty=False):
    """One streaming chat completion: send time, the arrival time of every chunk with content, usage. Connects first, so
    that with a barrier every stream sends its request at the same moment."""
    payload = json.dumps(body).encode()
    c = http.client.HTTPConnection(host, port, timeout=3600)
    c.connect()
    if barrier is not None: barrier.wait()
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body=payload, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200: raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    chunks, usage, finish = [], None, None
    while True:
        line = r.readline()
        if not line: break
        now = time.perf_counter()
        if not line.startswith(b"data: "): continue
        data = line[6:].strip()
        if data == b"[DONE]": break
        d = json.loads(data)
        if "error" in d: raise RuntimeError(f"stream error: {d['error']}")
        if d.get("usage"): usage = d["usage"]
        for ch in d.get("choices") or []:
            if (ch.get("delta") or {}).get("content"): chunks.append(now)
            if ch.get("finish_reason"): finish = ch["finish_reason"]
    end = time.perf_counter()
    r.read()  # the end of the chunked body, so that the server sees the reply completed before the connection closes
    c.close()
    if not chunks and not allow_empty: raise RuntimeError(f"no content chunk (finish_reason {finish}, usage {usage})")
    return {"start": t0, "first": chunks[0] if chunks else None, "last": chunks[-1] if chunks else None, "end": end, "chunks": chunks, "finish": finish,
            "prompt_tokens": (usage or {}).get("prompt_tokens"), "completion_tokens": (usage or {}).get("completion_tokens")}


def concurrent(host, port, bodies):
    """All bodies at once (one thread and connection each, released together); results in order."""
    results, errors = [None] * len(bodies), []
    barrier = threading.Barrier(len(bodies))
    def run(i):
        try: results[i] = stream_chat(host, port, bodies[i], barrier)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(f"stream {i}: {e}")
            try: barrier.abort()
            except threading.BrokenBarrierError: pass
    ths = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in ths: t.start()
    for t in ths: t.join()
    if errors: raise RuntimeError("; ".join(errors[:3]))
    return results


def ttft(r): return r["first"] - r["start"]


# ---- the shared system prompt -------------------------------------------------------------------------------------------

def source_words():
    """Varied text, the same every run: War and Peace from ../shared when present (past the front matter), else
    generated sentences."""
    if os.path.exists(CORPUS):
        with open(CORPUS, encoding="utf-8", errors="replace") as f:
            text = f.read()
        i = text.find("CHAPTER I")
        return text[i if i >= 0 else 0:][:400000].split()
    r = random.Random(16)
    subj = "the king|the old soldier|a young officer|the princess|her brother|the doctor|a peasant|the general".split("|")
    verb = "saw|remembered|wrote to|waited for|spoke of|looked at|forgave|followed".split("|")
    obj = "the river|the letter|the city in flames|his father|the frozen road|a small house|the regiment|the evening".split("|")
    words = []
    while len(words) < 60000:
        words += f"{r.choice(subj).capitalize()} {r.choice(verb)} {r.choice(obj)} {r.choice(['before dawn', 'in silence', 'again', 'at last', 'for a long time'])}.".split()
    return words


def system_text(words, n, salt):
    return (f"You are the assistant of reading circle {salt}. Answer questions about the following passage.\n\n"
            + " ".join(words[:n]))


def calibrate_system(a, host, port, model_id, words):
    """Word count whose system prompt (with a short user message, chat template applied) is about --system-tokens
    tokens, by the server's token counter (POST /v1/messages/count_tokens: no generation, nothing cached)."""
    user = "Question 0: who is speaking first?"
    def count(n):
        return get_json(host, port, "/v1/messages/count_tokens",
                        {"model": model_id, "system": system_text(words, n, 100000), "messages": [{"role": "user", "content": user}]})["input_tokens"]
    n = max(1, a.system_tokens * 3 // 4)
    got = count(n)
    for _ in range(6):
        if abs(got - a.system_tokens) <= max(4, a.system_tokens // 100): break
        n = max(1, min(len(words), round(n * a.system_tokens / max(got, 1))))
        got = count(n)
    return n, got


def user_message(i):
    return f"Question {i}: in two sentences, what does the passage say about {TOPICS[i % len(TOPICS)]}?"


def shared_prompt(a, host, port, model_id, words, nwords):
    out = {}
    # sequential: a cold first request, then later ones that share its system prompt
    system = system_text(words, nwords, 100001)
    log(f"shared prompt, sequential: first request, then {a.later} later ones")
    first = stream_chat(host, port, chat_body(a, model_id, user_message(0), system))
    later = [stream_chat(host, port, chat_body(a, model_id, user_message(i), system, seed=i)) for i in range(1, a.later + 1)]
    out["sequential"] = summarize_shared(first, later, 1)
    # N concurrent streams after a warm first request (another system prompt: nothing of the first is reused)
    n = a.shared_streams
    system = system_text(words, nwords, 100002)
    log(f"shared prompt, {n} concurrent: first request, then two rounds of {n} streams at once")
    first = stream_chat(host, port, chat_body(a, model_id, user_message(0), system))
    r1 = concurrent(host, port, [chat_body(a, model_id, user_message(i), system, seed=i) for i in range(1, n + 1)])
    r2 = concurrent(host, port, [chat_body(a, model_id, user_message(i), system, seed=i) for i in range(n + 1, 2 * n + 1)])
    out["concurrent_round1"] = summarize_shared(first, r1, n)
    out["concurrent_round2"] = summarize_shared(first, r2, n)
    return out


def summarize_shared(first, later, streams):
    t = [ttft(r) for r in later]
    med = statistics.median(t)
    return {"streams": streams, "prompt_tokens": first["prompt_tokens"], "first_ttft_s": ttft(first),
            "later_ttft_p50_s": med, "later_ttft_p99_s": percentile(t, 99), "later_ttft_s": t,
            "first_over_later": ttft(first) / med if med > 0 else None}


# ---- the concurrency sweep ----------------------------------------------------------------------------------------------

def sweep_level(a, host, port, model_id, n, rep):
    bodies = [chat_body(a, model_id, f"client {i} (pass {rep}): tell me a story about {TOPICS[i % len(TOPICS)]}", seed=i) for i in range(n)]
    rs = concurrent(host, port, bodies)
    ttfts = [ttft(r) for r in rs]
    itl = [b - x for r in rs for x, b in zip(r["chunks"], r["chunks"][1:])]
    tokens = [r["completion_tokens"] or len(r["chunks"]) for r in rs]
    # decode phase: from the first stream's first token to the last stream's last token; the first token of each stream
    # comes out of its prefill, so it is not counted as decoded
    window = max(r["last"] for r in rs) - min(r["first"] for r in rs)
    wall = max(r["end"] for r in rs) - min(r["start"] for r in rs)
    short = sum(1 for t in tokens if t < a.max_tokens)
    if short: log(f"  warning: {short} of {n} streams ended before max_tokens ({a.max_tokens}): {sorted(tokens)[:8]}")
    return {"streams": n, "completion_tokens": sum(tokens), "prompt_tokens_mean": statistics.mean(r["prompt_tokens"] or 0 for r in rs),
            "decode_window_s": window, "wall_s": wall,
            "aggregate_decode_tok_s": (sum(tokens) - n) / window if window > 0 else None,
            "end_to_end_tok_s": sum(tokens) / wall,
            "per_stream_decode_tok_s_p50": percentile([(t - 1) / (r["last"] - r["first"]) for t, r in zip(tokens, rs) if r["last"] > r["first"]], 50),
            "ttft_p50_s": percentile(ttfts, 50), "ttft_p99_s": percentile(ttfts, 99),
            "itl_p50_s": percentile(itl, 50), "itl_p99_s": percentile(itl, 99), "content_chunks": sum(len(r["chunks"]) for r in rs),
            "ended_short": short}


def median_of(reps):
    """Each metric's median over the passes of one level (the passes themselves are kept in the JSON)."""
    m = dict(reps[0])
    for k, v in reps[0].items():
        if isinstance(v, (int, float)) and k != "streams":
            vals = [r[k] for r in reps if r[k] is not None]
            m[k] = statistics.median(vals) if vals else None
    return m


# ---- report ------------------------------------------------------------------------------------------------------------

def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError: pass
    try: commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError: commit = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "commit": commit}


def fmt(v, scale=1.0, digits=1):
    return "—" if v is None else f"{v * scale:,.{digits}f}"


def table(rep):
    a = rep["settings"]
    lines = [f"Machine: {rep['machine']['cpu']}, {rep['machine']['cores']} cores; commit {rep['machine']['commit']}; "
             f"server: {rep['server']}"]
    if a["favored_text_tokens"]:
        lines.append(f"Random-weight model: {a['favored_text_tokens']} ordinary text tokens biased +{a['favor_bias']:g} (logit_bias) so that "
                     f"every generated token streams as a content chunk; end-of-reply tokens {a['ban']} banned")
    lines.append("")
    if rep.get("shared"):
        s = rep["shared"]
        lines += [f"Shared system prompt: {s['sequential']['prompt_tokens']} prompt tokens in the first request (system prompt "
                  f"calibrated to {a['system_tokens']}), max_tokens {a['max_tokens']}, temperature {a['temperature']}", "",
                  "| case | streams | first request TTFT ms | later TTFT p50 ms | later TTFT p99 ms | first / later p50 |",
                  "|---|---:|---:|---:|---:|---:|"]
        names = {"sequential": f"one at a time ({a['later']} later requests)",
                 "concurrent_round1": "concurrent, round 1 (the prompt is cached in one slot)",
                 "concurrent_round2": "concurrent, round 2 (cached in the slots of round 1)"}
        for k, name in names.items():
            x = s[k]
            lines.append(f"| {name} | {x['streams']} | {fmt(x['first_ttft_s'], 1e3)} | {fmt(x['later_ttft_p50_s'], 1e3)} | "
                         f"{fmt(x['later_ttft_p99_s'], 1e3)} | {fmt(x['first_over_later'], 1, 2)}× |")
        lines.append("")
    if rep.get("sweep"):
        lines += [f"Concurrency sweep: short distinct prompts (~{fmt(rep['sweep'][0]['prompt_tokens_mean'], 1, 0)} tokens), "
                  f"max_tokens {a['max_tokens']}, temperature {a['temperature']}, {a['reps']} pass(es) per level (median shown); "
                  f"{rep['parallel_note']}", "",
                  "| streams | completion tokens | aggregate decode tok/s | end-to-end tok/s | per-stream decode tok/s p50 | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in rep["sweep"]:
            lines.append(f"| {x['streams']} | {x['completion_tokens']:.0f} | {fmt(x['aggregate_decode_tok_s'])} | {fmt(x['end_to_end_tok_s'])} | "
                         f"{fmt(x['per_stream_decode_tok_s_p50'])} | {fmt(x['ttft_p50_s'], 1e3)} | {fmt(x['ttft_p99_s'], 1e3)} | "
                         f"{fmt(x['itl_p50_s'], 1e3)} | {fmt(x['itl_p99_s'], 1e3)} |")
        lines += ["", "aggregate decode = (completion tokens - one first token per stream) / (last stream's last content chunk - "
                  "first stream's first content chunk); end-to-end = completion tokens / (last reply's end - first request's send); "
                  "ITL: gaps between successive content chunks of one stream, pooled over streams."]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description="Concurrency and shared-prompt benchmark of `openweights serve` (issue 16).")
    p.add_argument("model", nargs="?", help="GGUF file to serve (not with --url)")
    p.add_argument("--url", help="measure a server already running at this address (nothing is started; see --ban-tokens)")
    p.add_argument("--port", type=int, default=0, help="port for the server started here (default: a free one)")
    p.add_argument("--streams", default="1,4,16,32", help="concurrent streams of the sweep (default 1,4,16,32)")
    p.add_argument("--max-tokens", type=int, default=64, help="completion tokens of every request (default 64)")
    p.add_argument("--ctx", type=int, default=4096, help="context size of each slot, serve --ctx (default 4096)")
    p.add_argument("--system-tokens", type=int, default=2000, help="length of the shared system prompt in tokens (default 2000; 0: skip part 1)")
    p.add_argument("--later", type=int, default=4, help="later requests after the first, one at a time (default 4)")
    p.add_argument("--shared-streams", type=int, default=0, help="concurrent streams after the warm first request (default: the largest of --streams)")
    p.add_argument("--parallel", type=int, default=0, help="serve --parallel (default: the largest stream count measured)")
    p.add_argument("--restart-each", action="store_true", help="a server per sweep level with --parallel equal to its streams (and one for part 1)")
    p.add_argument("--threads", type=int, default=0, help="serve --threads (default: the server's own choice)")
    p.add_argument("--reps", type=int, default=1, help="passes per sweep level; the table shows each metric's median (default 1)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy; seeded per stream otherwise)")
    p.add_argument("--ban-tokens", default=None, help="token ids banned with logit_bias -100 (default: the model's end-of-reply markers, found by `openweights tokenize`)")
    p.add_argument("--favor-text", choices=["auto", "on", "off"], default="auto",
                   help="bias ordinary text tokens up with logit_bias (found by `openweights tokenize` of the corpus), for random-weight "
                        "models whose tokens are mostly control tokens that stream no text; auto: when the warm-up reply streams "
                        "fewer content chunks than half its tokens (default auto)")
    p.add_argument("--favor-bias", type=float, default=100, help="the bias of --favor-text (default 100, the most logit_bias allows)")
    p.add_argument("--no-sweep", action="store_true", help="part 1 only")
    p.add_argument("--dll", default=DLL, help="OpenWeights.Cli.dll to run (default: the Release build of this checkout)")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument for serve, repeatable (e.g. --server-arg=--cache-type-k=q8_0)")
    p.add_argument("--server-log", help="append the server's output (its access log: a line per request) to this file and keep it")
    p.add_argument("--ready-timeout", type=float, default=600, help="seconds to wait for GET /health (default 600)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON instead of the table")
    a = p.parse_args()
    a.streams = [int(x) for x in a.streams.split(",") if x.strip()]
    if not a.streams or min(a.streams) < 1: p.error("--streams needs positive integers")
    a.shared_streams = a.shared_streams or max(a.streams)
    if a.url is None and a.model is None: p.error("give MODEL (a GGUF file) or --url")
    if a.url and a.restart_each: p.error("--restart-each starts servers: not with --url")
    if a.url is None and not os.path.exists(a.dll): p.error(f"{a.dll} not found: dotnet build src/OpenWeights.Cli -c Release")
    if a.system_tokens + 64 + a.max_tokens > a.ctx: p.error(f"--ctx {a.ctx} cannot hold the system prompt ({a.system_tokens}) + a question + max_tokens ({a.max_tokens})")

    if a.ban_tokens is not None: a.ban = [int(x) for x in a.ban_tokens.split(",") if x.strip()]
    elif a.url is None: a.ban = end_token_ids(a); log(f"end-of-reply tokens banned (logit_bias -100): {a.ban}")
    else: a.ban = []
    a.favor = None

    report = {"machine": machine()}
    words = source_words() if a.system_tokens > 0 else None
    servers = []

    def with_server(parallel):
        if a.url:
            u = urllib.parse.urlparse(a.url)
            report["server"] = a.url
            return (u.hostname, u.port or 80, None)
        s = Server(a, parallel); servers.append(s)
        report["server"] = " ".join(["openweights"] + s.cmd[2:])
        return (s.host, s.port, s)

    def stop(s):
        if s is not None: s.stop(); servers.remove(s)

    def model_and_warm(host, port):
        mid = get_json(host, port, "/v1/models")["data"][0]["id"]
        b = chat_body(a, mid, "warm-up"); b["max_tokens"] = 16
        r = stream_chat(host, port, b, allow_empty=True)  # JIT and page faults outside the measurements
        if a.favor is None:  # decided once: does the model write text?
            few = len(r["chunks"]) < (r["completion_tokens"] or 0) / 2
            if a.favor_text == "on" or (a.favor_text == "auto" and few):
                if a.model is None: raise SystemExit("the model writes few text tokens (random weights?) and --favor-text needs MODEL (with --url too) to find them; or --favor-text off")
                a.favor = text_token_ids(a, words or source_words())
                log(f"{len(r['chunks'])} content chunks for {r['completion_tokens']} tokens in the warm-up: biasing {len(a.favor)} ordinary "
                    f"text tokens by +{a.favor_bias:g} (logit_bias), so that every token is a content chunk")
            else: a.favor = []
        return mid

    try:
        top = a.parallel or max(max(a.streams), a.shared_streams if a.system_tokens > 0 else 0)
        srv = None
        if a.system_tokens > 0 or not a.restart_each:
            host, port, srv = with_server(a.shared_streams if a.restart_each else top)
            mid = model_and_warm(host, port)
        if a.system_tokens > 0:
            nwords, counted = calibrate_system(a, host, port, mid, words)
            log(f"system prompt: {nwords} words = {counted} tokens with a question (count_tokens)")
            report["shared"] = shared_prompt(a, host, port, mid, words, nwords)
            for k, v in report["shared"].items():
                log(f"  {k}: first TTFT {v['first_ttft_s'] * 1e3:.0f} ms, later p50 {v['later_ttft_p50_s'] * 1e3:.0f} ms")
        if not a.no_sweep:
            report["parallel_note"] = ("a server per level with --parallel equal to its streams" if a.restart_each
                                       else f"one server with --parallel {top}" if not a.url else "server started elsewhere")
            report["sweep"], report["sweep_passes"] = [], []
            for n in a.streams:
                if a.restart_each:
                    stop(srv); host, port, srv = with_server(n); mid = model_and_warm(host, port)
                passes = []
                for rep in range(a.reps):
                    r = sweep_level(a, host, port, mid, n, rep)
                    log(f"{n:3d} streams, pass {rep + 1}/{a.reps}: aggregate decode {fmt(r['aggregate_decode_tok_s'])} tok/s, "
                        f"TTFT p50 {fmt(r['ttft_p50_s'], 1e3)} ms, ITL p50 {fmt(r['itl_p50_s'], 1e3)} ms")
                    passes.append(r)
                report["sweep"].append(median_of(passes)); report["sweep_passes"].append(passes)
        stop(srv)
    finally:
        for s in list(servers): s.stop()
    report["settings"] = {k: v for k, v in vars(a).items() if k not in ("ban_tokens", "favor")}
    report["settings"]["favored_text_tokens"] = len(a.favor or [])
    if a.json: print(json.dumps(report, indent=2))
    else: print(table(report))


if __name__ == "__main__":
    main()
