#!/usr/bin/env bash
# floor.sh shows where the ingest stage's CPU goes, against the least the
# design card's libraries can do. On one fresh Pub/Sub emulator it runs, side
# by side:
#   floor           bench/floor: watermill-http -> Watermill router -> the
#                   ingest stage's publisher, none of the stage's per-request
#                   code;
#   floor-direct    bench/floor --direct: a bare net/http handler -> the same
#                   publisher (what the subscriber and the router cost);
#   gatekeeper      --stages=ingest with the defaults (the outbox on, as on
#                   any emulator), except AUTH=none (wrk sends no key),
#                   LOG_LEVEL=warn, ADMIN_ADDR=off and OUTBOX_REDELIVER_AFTER=1h
#                   (nothing is applied here, and republishing what the first
#                   runs accepted would weigh on the later ones);
#   gatekeeper-off  the same with OUTBOX=off (what runs on Google Pub/Sub).
# No other setting of the caller's environment reaches them.
# Then it posts bench/post.lua with wrk -t1 -c256 to each in turn, ROUNDS
# times, and prints for each run req/s, p99 and the CPU per request of the
# process and of the emulator (from /proc), then the medians. Interleaved
# runs of processes that all stay up make the comparison fair on a machine
# whose speed drifts from minute to minute.
#
# Usage: bench/floor.sh [ROUNDS] [SECONDS]     (default 6 rounds of 5 s)
# Needs: wrk, curl, python3, pgrep, setsid, gcloud's Pub/Sub emulator, Go.
# Loopback only; every process it starts is stopped by its pid (the
# emulator by its process group), and every wait is bounded.
set -euo pipefail
shopt -s inherit_errexit
rounds=${1:-6}
dur=${2:-5}
[[ $rounds =~ ^[1-9][0-9]*$ && $dur =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [ROUNDS] [SECONDS]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/floor.XXXXXX)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
# ticks: CPU ticks (utime + stime) used so far by the given pids and their
# threads; the fields after the command name, which may hold spaces.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12+$13}'))); done; echo "$t"; }

(cd "$root" && go build -o "$tmp/floor" ./bench/floor && go build -o "$tmp/gatekeeper" ./cmd/gatekeeper)

start_emulator
# The emulator's CPU is that of every process in its group (gcloud starts java).
emupids() { pgrep -g "$emu" | tr '\n' ' '; }

declare -A pid url
for name in floor floor-direct; do
	fp=$(port)
	flags=()
	[ "$name" = floor-direct ] && flags=(--direct)
	"${clean_env[@]}" PUBSUB_EMULATOR_HOST=127.0.0.1:$ep "$tmp/floor" "${flags[@]}" "127.0.0.1:$fp" "$name" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	pid[$name]=$!
	url[$name]=http://127.0.0.1:$fp
done

for name in gatekeeper gatekeeper-off; do
	hp=$(port)
	outbox=auto
	[ "$name" = gatekeeper-off ] && outbox=off
	mkdir -p "$tmp/run-$name"
	(cd "$tmp/run-$name" && exec "${clean_env[@]}" AUTH=none PUBSUB_EMULATOR_HOST=127.0.0.1:$ep PROJECT_ID=test \
		TOPIC_ID="$name" SUBSCRIPTION_ID="$name-sub" POISON_SUBSCRIPTION_ID="$name-poison-sub" \
		HTTP_ADDR=127.0.0.1:$hp ADMIN_ADDR=off LOG_LEVEL=warn OUTBOX=$outbox OUTBOX_REDELIVER_AFTER=1h \
		"$tmp/gatekeeper" serve --stages=ingest >"$tmp/run-$name/log" 2>&1) &
	pids+=($!)
	pid[$name]=$!
	url[$name]=http://127.0.0.1:$hp
	wait_http "http://127.0.0.1:$hp/readyz"
done
wait_http "${url[floor]}/api/activities" any
wait_http "${url[floor-direct]}/api/activities" any

systems=(floor floor-direct gatekeeper gatekeeper-off)
run() { # system -> "rps p99 cpu-us/req emulator-cpu-us/req non-2xx socket-errors"
	local s=$1 e before ebefore out reqs hz
	e=$(emupids)
	[ -n "$e" ] || { echo "the emulator is gone" >&2; return 1; }
	hz=$(getconf CLK_TCK)
	before=$(ticks "${pid[$s]}")
	# shellcheck disable=SC2086
	ebefore=$(ticks $e)
	out=$(wrk -t1 -c256 -d"${dur}s" --latency -s "$root/bench/post.lua" "${url[$s]}/api/activities" 2>&1)
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	[ "${reqs:-0}" -gt 0 ] || { printf 'wrk against %s answered nothing:\n%s\n' "$s" "$out" >&2; return 1; }
	# shellcheck disable=SC2086
	echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") \
$(( ($(ticks "${pid[$s]}") - before) * 1000000 / hz / reqs )) $(( ($(ticks $e) - ebefore) * 1000000 / hz / reqs )) \
$(awk '/Non-2xx/ {n=$5} END {print n+0}' <<<"$out") \
$(awk -F'[ ,]+' '/Socket errors/ {n=$5+$7+$9+$11} END {print n+0}' <<<"$out")"
}

for s in "${systems[@]}"; do line=$(run "$s"); done # warm the emulator's JVM and every process
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %10s %10s %14s %18s %8s %14s\n' system req/s p99 CPU-us/req emulator-us/req non-2xx socket-errors
for r in $(seq 1 "$rounds"); do
	for s in "${systems[@]}"; do
		line=$(run "$s")
		read -r rps p99 cpu ecpu n2x serr <<<"$line"
		printf '%-15s %10s %10s %14s %18s %8s %14s\n' "$s" "$rps" "$p99" "$cpu" "$ecpu" "$n2x" "$serr" | tee -a "$tmp/runs"
	done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, rps, _p99, cpu, ecpu, _n2x, _serr = line.split()
    rows.setdefault(s, []).append((float(rps), int(cpu), int(ecpu)))
print("medians:")
for s, v in rows.items():
    print(f"  {s:15} {statistics.median(x[0] for x in v):8.0f} req/s  {statistics.median(x[1] for x in v):5.0f} CPU-us/req"
          f"  + emulator {statistics.median(x[2] for x in v):4.0f}  = {statistics.median(x[1] + x[2] for x in v):5.0f}")
PY
