#!/usr/bin/env bash
# Paged KV memory (issue 16): resident memory (VmRSS) of `serve --parallel 16 --ctx 32768` before and after 16 short
# concurrent chats, beside what a contiguous cache per slot takes (slots x context x bytes per position, printed by the
# server's /metrics as the sum the slots could grow to) and what the slots' caches hold (openweights_kv_cache_bytes).
# Usage: [LONG=WORDS] [EXTRA="--kv-budget 1G"] bench/serve_kv_rss.sh MODEL.gguf [PARALLEL] [CTX] [CLI]
#   CLI: another build's OpenWeights.Cli, to compare; LONG: then PARALLEL more chats at once, each a prompt of about
#   WORDS words (long documents), with the peak (VmHWM) after them; EXTRA: more serve options.
# (not a timed test: figures go to BENCHMARKS.md)
set -euo pipefail
model=${1:?a GGUF model}; np=${2:-16}; ctx=${3:-32768}
cli=${4:-$(dirname "$0")/../src/OpenWeights.Cli/bin/Release/net10.0/OpenWeights.Cli}
port=$((20000 + RANDOM % 20000))
log=$(mktemp)
"$cli" serve "$model" --port "$port" --parallel "$np" --ctx "$ctx" --threads 2 ${EXTRA:-} >/dev/null 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$pid/status; }
hwm() { awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$pid/status; }
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "serve did not start:"; cat "$log"; exit 1; }
echo "started: VmRSS $(rss) MiB"
pids=()
for i in $(seq 1 "$np"); do
  curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
    -d "{\"messages\":[{\"role\":\"user\",\"content\":\"chat $i: hello, how are you today?\"}],\"max_tokens\":32,\"temperature\":0.7,\"seed\":$i}" >/dev/null &
  pids+=($!)
done
wait "${pids[@]}"
sleep 1
echo "after $np short chats: VmRSS $(rss) MiB"
curl -s "http://127.0.0.1:$port/metrics" | grep -E "^openweights_(kv_cache_bytes|kv_budget_bytes|prompt_cache_bytes) " || echo "(this build has no KV memory metrics)"
if [ -n "${LONG:-}" ]; then
  doc=$(python3 -c "import random; r=random.Random(1); w='the of bank loan record client term rate law court health patient claim policy audit'.split(); print(' '.join(r.choice(w) for _ in range($LONG)))")
  pids=()
  t0=$(date +%s.%N)
  for i in $(seq 1 "$np"); do
    curl -s "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
      -d "{\"prompt\":\"document $i: $doc\",\"max_tokens\":16,\"temperature\":0}" -o /dev/null -w "%{http_code} " &
    pids+=($!)
  done
  wait "${pids[@]}"; echo
  echo "after $np chats of ~$LONG words at once ($(python3 -c "import time; print(f'{time.time()-$t0:.0f}')") s): VmRSS $(rss) MiB, peak VmHWM $(hwm) MiB"
  curl -s "http://127.0.0.1:$port/metrics" | grep -E "^openweights_(kv_cache_bytes|preemptions_total|prompt_cache_bytes) " || true
fi
