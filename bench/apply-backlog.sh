#!/usr/bin/env bash
# apply-backlog.sh measures how fast the apply stage drains a backlog: it
# fills the topic through an ingest-only process, stops it, then starts an
# apply-only process on a fresh SQLite warehouse and counts the ledger every
# 100 ms until every accepted payload is in it (the ledger is the truth: a
# payload is applied when its row is committed there).
#
# Resolution: one sqlite3 stays open for the whole drain and is fed a query
# per sample through a pipe, and the wait between samples is a bash builtin,
# so a sample costs its query alone: 0.5 ms on an empty ledger, about 12 ms
# at 100,000 rows (a 2-core machine). Samples start every 100 ms, or right
# after the previous one when a query takes longer. The longest gap is
# accurate to one interval between samples: about 0.1 s on a quiet machine,
# up to about 0.2 s at load 9 on 2 cores (a check of 5,000 payloads:
# intervals of 100 ms on average, 221 ms at most). The summary prints the
# longest interval the run actually had, which bounds the error. (A new
# sqlite3 process per sample takes about 0.15 s here, which would make the
# gaps accurate to only about 0.25 s.)
#
# With --restart it measures the drain after a graceful restart of the apply
# stage, the local stack's everyday restart: an apply process is started
# first, on the same subscription, and runs until it has applied a few
# payloads (so its streaming pulls are open and receiving); it is stopped
# with SIGTERM, then the backlog is filled, then a new apply process drains
# it. The figures count only the backlog, not the warm-up payloads.
# Measured figures, dated, are in bench/RESULTS.md.
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
# remained, the sampling it was measured with, the average group size
# (gatekeeper_group_size), and the deliveries the ledger answered as
# duplicates.
# Needs: bash 5 (EPOCHREALTIME), sqlite3, curl, awk.
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
# The ledger is read by one sqlite3 that stays open (started once the
# warehouse file exists), one query per sample; each query is followed by a
# numbered marker, so an answer is never taken for another sample's. Its
# read-only connection reads each query in a transaction of its own, so it
# sees every commit and holds nothing between samples.
mkfifo "$work/tick"
exec {tick}<>"$work/tick" # read -t on it: a sleep without a process
# Times are integer microseconds from EPOCHREALTIME, with no process forked.
seconds() { printf -v "$1" '%d.%06d' $(($2 / 1000000)) $(($2 % 1000000)); } # VAR MICROSECONDS
sq_pid=""
seq=0
sample() { # sets n to the ledger's count, or leaves it unset
	local line
	n=""
	seq=$((seq + 1))
	printf '%s\n' 'SELECT count(*) FROM "_gatekeeper_ledger";' ".print @$seq" >&"${SQ[1]}" || return 0
	while IFS= read -r -t 5 line <&"${SQ[0]}"; do
		case $line in
		"@$seq") return 0 ;;
		*[!0-9]* | "") ;; # "no such table" until the apply stage has made it
		*) n=$line ;;
		esac
	done
	echo "sqlite3 gave no answer within 5 s" >&2
	return 1
}
start=${EPOCHREALTIME/./}
HTTP_ADDR=127.0.0.1:$apply_port "$bin" serve --stages=apply >"$work/apply.log" 2>&1 &
apply=$!
pids+=("$apply")
: >"$work/samples"
count=0
next=$start
until [ "$count" -ge "$accepted" ]; do
	now=${EPOCHREALTIME/./}
	if ((now - start > deadline * 1000000)); then
		echo "gave up after $deadline s with $count of $accepted applied" >&2
		break
	fi
	if [ -z "$sq_pid" ] && [ -f "$db" ]; then
		coproc SQ { exec sqlite3 -batch -cmd ".timeout 1000" "file:$db?mode=ro" 2>&1; }
		sq_pid=$SQ_PID
		pids+=("$sq_pid")
	fi
	if [ -n "$sq_pid" ]; then
		sample || true
		[ -n "$n" ] && count=$((n - base))
		now=${EPOCHREALTIME/./} # the count is at most as old as this
	fi
	seconds t $((now - start))
	echo "$t $count" >>"$work/samples"
	next=$((next + 100000))
	wait_us=$((next - ${EPOCHREALTIME/./}))
	if ((wait_us > 0)); then
		seconds w "$wait_us"
		read -r -t "$w" -u "$tick" || true
	else
		next=${EPOCHREALTIME/./} # a slow sample: start the next one now, and count from it
	fi
done
if [ -n "$sq_pid" ]; then kill -TERM "$sq_pid" 2>/dev/null || true; fi
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
	NR > 1 && t - prevt > step { step = t - prevt }
	{ prevt = t; samples++ }
	int(t) > sec { sec = int(t); printf "%4d s %7d\n", sec, c }
	END {
		printf "time to first apply %.1f s; all %d applied at %.1f s\n", first, lastc, last
		if (last > first) printf "sustained %.0f payloads/s (first to last apply)\n", (lastc) / (last - first)
		printf "longest gap without applies %.2f s (from %.1f s)\n", gap, gapat
		printf "sampled the ledger %d times in %.1f s, every %.0f ms on average, at most %.0f ms apart: gaps are accurate to %.2f s\n", samples, prevt, 1000 * prevt / (samples > 1 ? samples - 1 : 1), 1000 * step, step
		printf "average group size %s\n", groups
		printf "deliveries answered as duplicates %s\n", dups
		printf "load average at the end %s\n", load
	}' "$work/samples"
echo "logs and samples in $work"
