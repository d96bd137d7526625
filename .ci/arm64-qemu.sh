#!/usr/bin/env bash
# ARM64 for real, on an x64 machine: publish the CLI self-contained for linux-arm64 (the runtime packs come from NuGet),
# run it under qemu-aarch64 and check that
#   1. `hardware --json` says "kernels": "neon" (the portable 128-bit kernels run, not the scalar references),
#   2. stories260K continues "Once upon a time" greedily exactly as on x64 (= the expected text in
#      ../shared/testdata/models/stories260K.expected.json, which the x64 tests check),
#   3. tiny synthetic models (Q4_K + Q6_K, Q8_0, Q4_0, Q5_0, Q5_K, F16 weights: every 128-bit kernel) give the same greedy text as
#      the x64 run with the 128-bit kernels forced (OPENWEIGHTS_FORCE_VECTOR128=1) and .NET's vectors at 128 bits
#      (DOTNET_EnableAVX2=0, so TensorPrimitives and softmax sum in ARM64's order); against the x64 default path (AVX2/AVX-512)
#      it is reported only: a random-weight model's near-tied logits may pick another token under another float order,
#   4. the same on a CPU model without the dot-product extension (qemu -cpu cortex-a72: no SDOT, the smull/sadalp branch).
# Best effort: when qemu or the arm64 cross libc is missing and apt cannot install them, or the publish cannot restore
# the linux-arm64 runtime packs, it prints why and exits 0. A wrong result exits 1.
# Usage: bash .ci/arm64-qemu.sh   (from anywhere; ARM64_QEMU_PUBLISH_DIR=dir keeps the published arm64 CLI there; takes a few minutes, most of it the publish and qemu's JIT start-up)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
say() { echo "arm64-qemu: $*"; }
skip() { say "skipped: $*"; exit 0; }
fail() { say "FAILED: $*" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- qemu-user and the arm64 C/C++ runtime (Debian: qemu-user, libc6-arm64-cross, libstdc++6-arm64-cross)
sysroot=/usr/aarch64-linux-gnu
if ! command -v qemu-aarch64 >/dev/null || [ ! -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || [ ! -e "$sysroot/lib/libstdc++.so.6" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing qemu-user libc6-arm64-cross libstdc++6-arm64-cross with apt"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user libc6-arm64-cross libstdc++6-arm64-cross; } >"$work/apt.log" 2>&1; then
      tail -5 "$work/apt.log"
      skip "apt could not install qemu-user and the arm64 cross runtime"
    fi
  else
    skip "qemu-aarch64 or $sysroot is absent and apt-get is not usable here"
  fi
fi
command -v qemu-aarch64 >/dev/null || skip "qemu-aarch64 still absent after the install"
export QEMU_LD_PREFIX=$sysroot DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# ---- the x64 CLI (already built by the test run; a no-op then) and the arm64 publish
dotnet build src/OpenWeights.Cli -c Release -v q --nologo >"$work/build.log" 2>&1 || { tail -20 "$work/build.log"; fail "x64 build"; }
x64() { dotnet src/OpenWeights.Cli/bin/Release/net10.0/OpenWeights.Cli.dll "$@"; }
pub="${ARM64_QEMU_PUBLISH_DIR:-$work/pub}" # set ARM64_QEMU_PUBLISH_DIR to keep the arm64 build (e.g. for timing runs)
t=$SECONDS
if ! dotnet publish src/OpenWeights.Cli -c Release -r linux-arm64 --self-contained -o "$pub" -v q --nologo >"$work/publish.log" 2>&1; then
  tail -20 "$work/publish.log"
  if grep -qE "NU1101|NU1102|NU1301|NETSDK1112|NETSDK1083|Unable to find package|unable to load the service index" "$work/publish.log"; then
    skip "the linux-arm64 runtime packs could not be restored"
  fi
  fail "dotnet publish -r linux-arm64"
fi
say "published linux-arm64 self-contained in $((SECONDS - t)) s"
arm64() { qemu-aarch64 "$pub/OpenWeights.Cli" "$@"; }

# ---- 1. the kernel path in use under qemu
t=$SECONDS
hw=$(arm64 hardware --json)
echo "$hw" | grep -q '"architecture": "arm64"' || { echo "$hw"; fail "hardware --json under qemu does not say arm64"; }
echo "$hw" | grep -q '"kernels": "neon"' || { echo "$hw"; fail "hardware --json under qemu does not report \"kernels\": \"neon\""; }
say "hardware --json under qemu: architecture arm64, kernels neon ($((SECONDS - t)) s)"

# ---- 2. stories260K, greedy, against x64 (and the expected text where python3 can read the JSON)
stories=../shared/testdata/models/stories260K.gguf
if [ -f "$stories" ]; then
  t=$SECONDS
  x64 run "$stories" "Once upon a time" --temp 0 -n 60 --threads 2 >"$work/stories.x64"
  arm64 run "$stories" "Once upon a time" --temp 0 -n 60 --threads 2 >"$work/stories.arm64"
  cmp -s "$work/stories.x64" "$work/stories.arm64" || { diff "$work/stories.x64" "$work/stories.arm64" || true; fail "stories260K under qemu differs from x64"; }
  if command -v python3 >/dev/null; then
    python3 - "$work/stories.arm64" ../shared/testdata/models/stories260K.expected.json <<'EOF' || fail "stories260K under qemu differs from the expected text"
import json, sys
got = open(sys.argv[1], encoding="utf-8").read().rstrip("\n")
want = json.load(open(sys.argv[2]))["cases"]["prompt_once_upon_a_time"]["text"][len("Once upon a time"):]
sys.exit(0 if got == want else 1)
EOF
  fi
  say "stories260K greedy under qemu equals x64 and the expected text ($((SECONDS - t)) s)"
else
  say "stories260K check skipped: $stories is absent"
fi

# ---- 3. synthetic quantized models: the 128-bit kernels' greedy text against x64 (default path and forced 128-bit)
for q in q4_k_m q8_0 q4_0 pure-q5_0 pure-q5_k f16; do
  t=$SECONDS
  m="$work/tiny-$q.gguf"
  x64 synth --preset tiny-llama -q "$q" -o "$m" --quiet >/dev/null
  x64 run "$m" "Once upon a time" --raw --temp 0 -n 32 --threads 2 >"$work/$q.x64"
  DOTNET_EnableAVX2=0 OPENWEIGHTS_FORCE_VECTOR128=1 x64 run "$m" "Once upon a time" --raw --temp 0 -n 32 --threads 2 >"$work/$q.x64v128"
  arm64 run "$m" "Once upon a time" --raw --temp 0 -n 32 --threads 2 >"$work/$q.arm64"
  [ -s "$work/$q.x64" ] || fail "tiny-llama $q: the x64 run printed nothing"
  cmp -s "$work/$q.x64v128" "$work/$q.arm64" || fail "tiny-llama $q: qemu (neon) differs from x64 with the 128-bit kernels forced and 128-bit vectors"
  # The x64 default path sums norms and dots (TensorPrimitives) in 256/512-bit lanes, another float order: a random-weight
  # model's near-tied logits may then pick another token, so that comparison is reported, not required.
  if cmp -s "$work/$q.x64" "$work/$q.arm64"; then same="and the x64 default path"; else same="(the x64 default path, other float order, diverges)"; fi
  say "tiny-llama $q greedy (32 tokens) under qemu equals x64 128-bit $same ($((SECONDS - t)) s)"
done

# ---- 4. an ARM64 CPU without SDOT (Cortex-A72, as Graviton 1 / Raspberry Pi 4): the AdvSimd multiply-widen branch
t=$SECONDS
qemu-aarch64 -cpu cortex-a72 "$pub/OpenWeights.Cli" run "$work/tiny-q4_k_m.gguf" "Once upon a time" --raw --temp 0 -n 32 --threads 2 >"$work/a72.arm64"
cmp -s "$work/q4_k_m.arm64" "$work/a72.arm64" || fail "tiny-llama q4_k_m on a Cortex-A72 (no SDOT) differs from the SDOT run"
say "tiny-llama q4_k_m on qemu -cpu cortex-a72 (no SDOT) equals the SDOT run ($((SECONDS - t)) s)"

say "all ARM64 checks passed in $((SECONDS - t0)) s"
