#!/usr/bin/env bash
# floor.sh shows where the ingest stage's CPU goes, against the least the
# design card's libraries can do. On one fresh Pub/Sub emulator it runs, side
# by side:
#   floor           bench/floor: watermill-http -> Watermill router ->
#                   watermill-googlecloud, no gatekeeper code at all;
#   gatekeeper      --stages=ingest with the defaults (the outbox on, as on
#                   any emulator);
#   gatekeeper-off  the same with OUTBOX=off (what runs on Google Pub/Sub).
# Then it posts bench/post.lua with wrk -t1 -c256 to each in turn, ROUNDS
# times, and prints for each run req/s, p99 and the CPU per request of the
# process and of the emulator (from /proc), then the medians. Interleaved
# runs of processes that all stay up make the comparison fair on a machine
# whose speed drifts from minute to minute.
#
# Usage: bench/floor.sh [ROUNDS] [SECONDS]     (default 6 rounds of 5 s)
# Needs: wrk, python3, gcloud's Pub/Sub emulator, Go. Loopback only; every
# process it starts is stopped by its pid (the emulator by its process group).
set -euo pipefail
rounds=${1:-6}
dur=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/floor.XXXXXX)
pids=()
emu=""
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	[ -n "$emu" ] && { kill -TERM -- "-$emu" 2>/dev/null || true; }
	wait 2>/dev/null || true
}
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() {
	for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
	echo "no answer from $1" >&2
	return 1
}
# ticks: CPU ticks used so far by the given pids (and their threads).
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }

(cd "$root" && go build -o "$tmp/floor" ./bench/floor && go build -o "$tmp/gatekeeper" ./cmd/gatekeeper)

ep=$(port)
setsid gcloud beta emulators pubsub start --host-port="127.0.0.1:$ep" --project=test >"$tmp/emulator.log" 2>&1 &
emu=$!
api="http://127.0.0.1:$ep/v1/projects/test"
wait_http "$api/topics"
# The emulator's CPU is that of every process in its group (gcloud starts java).
emupids() { pgrep -g "$emu" | tr '\n' ' '; }

curl -s -X PUT "$api/topics/floor" >/dev/null
curl -s -X PUT "$api/subscriptions/floor-sub" -H 'Content-Type: application/json' \
	-d '{"topic":"projects/test/topics/floor"}' >/dev/null
fp=$(port)
PUBSUB_EMULATOR_HOST=127.0.0.1:$ep "$tmp/floor" "127.0.0.1:$fp" floor >"$tmp/floor.log" 2>&1 &
pids+=($!)
declare -A pid url
pid[floor]=$!
url[floor]=http://127.0.0.1:$fp

for name in gatekeeper gatekeeper-off; do
	hp=$(port)
	outbox=auto
	[ "$name" = gatekeeper-off ] && outbox=off
	mkdir -p "$tmp/run-$name"
	# OUTBOX_REDELIVER_AFTER: nothing is applied here, and a republish of
	# what the first runs accepted would weigh on the later ones.
	(cd "$tmp/run-$name" && exec env AUTH=none PUBSUB_EMULATOR_HOST=127.0.0.1:$ep PROJECT_ID=test \
		TOPIC_ID="$name" SUBSCRIPTION_ID="$name-sub" POISON_SUBSCRIPTION_ID="$name-poison-sub" \
		HTTP_ADDR=127.0.0.1:$hp ADMIN_ADDR=off LOG_LEVEL=warn OUTBOX=$outbox OUTBOX_REDELIVER_AFTER=1h \
		"$tmp/gatekeeper" serve --stages=ingest >"$tmp/run-$name/log" 2>&1) &
	pids+=($!)
	pid[$name]=$!
	url[$name]=http://127.0.0.1:$hp
	wait_http "http://127.0.0.1:$hp/healthz"
done
wait_http "${url[floor]}/api/activities" || true

systems=(floor gatekeeper gatekeeper-off)
run() { # system -> "rps p99 cpu-us/req emulator-cpu-us/req"
	local s=$1 before ebefore out reqs
	local e
	e=$(emupids)
	before=$(ticks "${pid[$s]}")
	# shellcheck disable=SC2086
	ebefore=$(ticks $e)
	out=$(wrk -t1 -c256 -d"${dur}s" --latency -s "$root/bench/post.lua" "${url[$s]}/api/activities" 2>&1)
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	local hz
	hz=$(getconf CLK_TCK)
	# shellcheck disable=SC2086
	echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") \
$(( ($(ticks "${pid[$s]}") - before) * 1000000 / hz / reqs )) $(( ($(ticks $e) - ebefore) * 1000000 / hz / reqs )) \
$(awk '/Non-2xx/ {print $5}' <<<"$out")"
}

for s in "${systems[@]}"; do run "$s" >/dev/null; done # warm the emulator's JVM and every process
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %10s %10s %14s %18s %8s\n' system req/s p99 CPU-us/req emulator-us/req non-2xx
for r in $(seq 1 "$rounds"); do
	for s in "${systems[@]}"; do
		read -r rps p99 cpu ecpu n2x <<<"$(run "$s")"
		printf '%-15s %10s %10s %14s %18s %8s\n' "$s" "$rps" "$p99" "$cpu" "$ecpu" "${n2x:-0}" | tee -a "$tmp/runs"
	done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, rps, _p99, cpu, ecpu, _n2x = line.split()
    rows.setdefault(s, []).append((float(rps), int(cpu), int(ecpu)))
print("medians:")
for s, v in rows.items():
    print(f"  {s:15} {statistics.median(x[0] for x in v):8.0f} req/s  {statistics.median(x[1] for x in v):5.0f} CPU-us/req"
          f"  + emulator {statistics.median(x[2] for x in v):4.0f}  = {statistics.median(x[1] + x[2] for x in v):5.0f}")
PY
