#!/usr/bin/env bash
# apply-backlog.sh measures how fast the apply stage drains a backlog: it
# fills the topic through an ingest-only process, stops it, then starts an
# apply-only process on a fresh SQLite warehouse and counts the ledger every
# 100 ms until every accepted payload is in it (the ledger is the truth: a
# payload is applied when its row is committed there).
#
# With --restart it measures the drain after a graceful restart of the apply
# stage, the local stack's everyday restart: an apply process is started
# first, on the same subscription, and runs until it has applied a few
# payloads (so its streaming pulls are open and receiving); it is stopped
# with SIGTERM, then the backlog is filled, then a new apply process drains
# it. The figures count only the backlog, not the warm-up payloads. On
# 2026-12-06, 50,000 payloads on a shared 2-core machine: the restart
# drained at 3,230/s (first apply 0.7 s, longest gap 0.9 s) beside 3,733/s
# for the plain drain at load 11, and at 1,228-2,814/s (first apply
# 0.7-2.1 s, longest gap 1.4-2.8 s) at load 25-70; before the apply stage
# closed its streams gracefully, 287-294/s with gaps of 17.5-22.9 s, in
# the same runs (see pipeline.NewSubscriber).
#
# Usage: bench/apply-backlog.sh [--restart] GATEKEEPER_BINARY [REQUESTS]
# Env:   PUBSUB_EMULATOR_HOST (required: a running emulator; loopback only)
#        PORT (HTTP port of the ingest process, default 18391; the apply
#        processes listen on PORT+1)
#        DEADLINE (seconds the drain may take, default 300)
#        WORKDIR (default a fresh temporary directory)
#        Any gatekeeper setting (RECEIVE_STREAMS, MAX_OUTSTANDING, ...) is
#        passed on to every process.
# Prints one line per second of progress, then a summary: time to first
# apply, sustained rate, longest gap without applies while a backlog
# remained, the average group size (gatekeeper_group_size), and the
# deliveries the ledger answered as duplicates.
# Every loop is bounded; the processes it starts are stopped by their pid.
set -euo pipefail

restart=0
if [ "${1:-}" = --restart ]; then
	restart=1
	shift
fi
bin=${1:?usage: $0 [--restart] GATEKEEPER_BINARY [REQUESTS]}
requests=${2:-100000}
port=${PORT:-18391}
deadline=${DEADLINE:-300}
: "${PUBSUB_EMULATOR_HOST:?set PUBSUB_EMULATOR_HOST to a running emulator}"
case $PUBSUB_EMULATOR_HOST in
127.0.0.1:* | localhost:* | "[::1]":*) ;;
*) echo "PUBSUB_EMULATOR_HOST must be a loopback address" >&2; exit 2 ;;
esac
work=${WORKDIR:-$(mktemp -d /tmp/apply-backlog.XXXXXX)}
mkdir -p "$work"
topic=backlog-$(date +%s)-$$
db=$work/warehouse.db
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

export AUTH=none PROJECT_ID=test TOPIC_ID=$topic SUBSCRIPTION_ID=$topic-sub \
	ADMIN_ADDR=off OUTBOX=off WAREHOUSE=sqlite:$db LOG_LEVEL=warn
apply_port=$((port + 1))

wait_ready() { # pid port
	for _ in $(seq 1 300); do
		curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$1" 2>/dev/null || { echo "process $1 exited" >&2; return 1; }
		sleep 0.1
	done
	echo "not ready after 30 s" >&2
	return 1
}
stop() { # pid
	kill -TERM "$1"
	for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	echo "process $1 did not stop in 60 s" >&2
	return 1
}

ledger() { # the payloads applied so far (0 before the ledger exists)
	sqlite3 -cmd ".timeout 1000" "file:$db?mode=ro" 'SELECT count(*) FROM "_gatekeeper_ledger"' 2>/dev/null || echo 0
}
accepted_of() { # loadgen's JSON report: the answers 200
	grep -o '"200": *[0-9]*' "$1" | grep -o '[0-9]*$' || echo 0
}

# 1. Fill. The ingest-only process creates the apply subscription before it
# accepts anything, so the topic keeps what it is given.
HTTP_ADDR=127.0.0.1:$port "$bin" serve --stages=ingest >"$work/ingest.log" 2>&1 &
ingest=$!
pids+=("$ingest")
wait_ready "$ingest" "$port"
base=0
if [ $restart = 1 ]; then
	# The apply process that is restarted: it runs until it has applied the
	# warm-up payloads, then gets SIGTERM, as an orchestrator sends it.
	HTTP_ADDR=127.0.0.1:$apply_port "$bin" serve --stages=apply >"$work/apply-first.log" 2>&1 &
	first_apply=$!
	pids+=("$first_apply")
	wait_ready "$first_apply" "$apply_port"
	"$bin" loadgen --target "http://127.0.0.1:$port" --mix insert --unique --connections 4 \
		--requests 100 --json >"$work/loadgen-warmup.json"
	base=$(accepted_of "$work/loadgen-warmup.json")
	for _ in $(seq 1 300); do
		[ "$(ledger)" -ge "$base" ] && break
		sleep 0.1
	done
	[ "$(ledger)" -ge "$base" ] || { echo "the first apply process applied $(ledger) of $base warm-up payloads in 30 s" >&2; exit 1; }
	stop "$first_apply"
	echo "restart: the first apply process applied $base warm-up payloads and stopped on SIGTERM"
fi
"$bin" loadgen --target "http://127.0.0.1:$port" --mix insert --unique --connections 64 \
	--requests "$requests" --json >"$work/loadgen.json"
stop "$ingest"
accepted=$(accepted_of "$work/loadgen.json")
echo "accepted $accepted of $requests (topic $topic, load average $(cut -d' ' -f1-3 /proc/loadavg))"

# 2. Drain. Counts below are the backlog's: the warm-up payloads the first
# apply process applied (base) are taken off.
start=$(date +%s.%N)
HTTP_ADDR=127.0.0.1:$apply_port "$bin" serve --stages=apply >"$work/apply.log" 2>&1 &
apply=$!
pids+=("$apply")
: >"$work/samples"
count=0
until [ "$count" -ge "$accepted" ]; do
	now=$(date +%s.%N)
	if (($(echo "$now - $start > $deadline" | bc))); then
		echo "gave up after $deadline s with $count of $accepted applied" >&2
		break
	fi
	if n=$(sqlite3 -cmd ".timeout 1000" "file:$db?mode=ro" 'SELECT count(*) FROM "_gatekeeper_ledger"' 2>/dev/null); then
		count=$((n - base))
	fi
	echo "$(echo "$now - $start" | bc) $count" >>"$work/samples"
	sleep 0.1
done
curl -fs "http://127.0.0.1:$apply_port/metrics" >"$work/metrics.txt" || true
groups=$(awk '/^gatekeeper_group_size_(sum|count)/ {v[$1]=$2} END {if (v["gatekeeper_group_size_count"]>0) printf "%.1f (%d payloads in %d groups)", v["gatekeeper_group_size_sum"]/v["gatekeeper_group_size_count"], v["gatekeeper_group_size_sum"], v["gatekeeper_group_size_count"]; else print "n/a"}' "$work/metrics.txt")
# Deliveries the ledger answered as already applied: redeliveries of
# payloads this process had applied (the ledger keeps them harmless).
dups=$(awk '/^gatekeeper_payloads_total/ && /duplicate/ {s+=$2; n++} END {if (n) print s; else print "n/a"}' "$work/metrics.txt")
stop "$apply"

awk -v total="$accepted" -v groups="$groups" -v dups="$dups" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
	{ t=$1; c=$2 }
	c > 0 && first == "" { first = t; last = t; lastc = c }
	first != "" && c > lastc { if (t - last > gap) { gap = t - last; gapat = last }; last = t; lastc = c }
	int(t) > sec { sec = int(t); printf "%4d s %7d\n", sec, c }
	END {
		printf "time to first apply %.1f s; all %d applied at %.1f s\n", first, lastc, last
		if (last > first) printf "sustained %.0f payloads/s (first to last apply)\n", (lastc) / (last - first)
		printf "longest gap without applies %.2f s (from %.1f s)\n", gap, gapat
		printf "average group size %s\n", groups
		printf "deliveries answered as duplicates %s\n", dups
		printf "load average at the end %s\n", load
	}' "$work/samples"
echo "logs and samples in $work"
