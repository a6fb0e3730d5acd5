#!/usr/bin/env bash
# peers.sh measures gatekeeper's ingest stage against Benthos v4.27, its
# nearest peer, or against another gatekeeper (other settings, another
# build), fairly, from a clone of this repository and nothing else.
#
# On one fresh Pub/Sub emulator it starts, side by side:
#   gatekeeper      --stages=ingest with the defaults (the outbox on, as on
#                   any emulator: a 200 comes once the payload is fsynced in
#                   the outbox and published), except AUTH=none (wrk sends no
#                   key), LOG_LEVEL=warn, ADMIN_ADDR=off and
#                   OUTBOX_REDELIVER_AFTER=1h (nothing is applied here, and
#                   republishing what earlier rounds accepted would weigh on
#                   later ones);
#   benthos         Benthos v4.27.0 with bench/benthos/benthos.yaml:
#                   http_server -> json_schema with the replaced service's
#                   schema (bench/benthos/schema.json) -> gcp_pubsub; a 200
#                   comes once the publish is acknowledged, nothing is kept;
#   benthos-sqlite  (with --durable) the same with Benthos's sqlite buffer,
#                   its durable one: a 200 comes once the message is in
#                   SQLite (which it opens with synchronous = 0, no fsync);
#   NAME            (with --vs NAME:SETTINGS) another gatekeeper like the
#                   first, with SETTINGS (KEY=VALUE,KEY=VALUE: environment
#                   variables of gatekeeper's, and bin=PATH for another
#                   binary). --vs may be given more than once; --vs same:
#                   (no settings) is an identical second gatekeeper, whose
#                   spread against the first is the noise a difference must
#                   clear.
# Every topic has one subscription, as gatekeeper's own accepted topic has
# (Pub/Sub drops what is published to a topic without one). No setting of
# the caller's environment reaches the processes measured.
#
# Then, fairly on a shared machine whose speed drifts from minute to minute:
# - every process stays up and is warm: one round of every system first,
#   not counted (it also warms the emulator's JVM);
# - the rounds are interleaved: each round runs every system once, the odd
#   rounds in the order above and the even ones in reverse, so that no
#   system always runs after the same one;
# - each run is wrk -t1 -c256 for SECONDS posting bench/post.lua (the
#   replaced service's example payload, a delete and an insert);
# - per run it prints the load average at its start, req/s, p99, and the
#   CPU per request of the system's process and of the emulator (utime +
#   stime from /proc over the run, divided by the requests answered), then
#   per system the median and the range over the rounds, and per round the
#   ratio of the first system (gatekeeper) to each other one.
# A run with non-2xx answers or socket errors is flagged: a system that
#   fails fast would otherwise look fast.
#
# Usage: bench/peers.sh [--no-benthos] [--durable] [--vs NAME:SETTINGS]... [ROUNDS] [SECONDS]
#   (default 6 rounds of 6 s)
#   bench/peers.sh 10 5                                  gatekeeper against Benthos
#   bench/peers.sh --no-benthos --vs nobox:OUTBOX=off 10 5
#                                                        gatekeeper against itself without the outbox
#   bench/peers.sh --no-benthos --vs before:bin=/tmp/gatekeeper-before 10 5
#                                                        two builds
# Benthos is built once, from the Go module proxy (the module
# github.com/benthosdev/benthos/v4 v4.27.0, pinned with every dependency by
# bench/benthos/go.mod and go.sum), into
# ${XDG_CACHE_HOME:-~/.cache}/gatekeeper-bench/benthos-v4.27.0 (-sql with
# its sql components, for --durable): a few minutes and about 2 GB of module
# and build cache the first time.
# Needs: wrk, curl, python3, pgrep, setsid, gcloud's Pub/Sub emulator, Go.
# Loopback only; every run is bounded in time (wrk -d, under a timeout);
# every process it starts is stopped by its pid (the emulator by its process
# group), and every wait is bounded.
set -euo pipefail
shopt -s inherit_errexit
usage() { sed -n '/^# Usage:/,/two builds$/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
benthos_on=1
durable=0
variants=()
while [ $# -gt 0 ]; do
	case $1 in
	--no-benthos) benthos_on=0 ;;
	--durable) durable=1 ;;
	--vs)
		[ $# -ge 2 ] || usage
		[[ $2 =~ ^[a-z][a-z0-9-]*:([A-Za-z_][A-Za-z0-9_]*=[^,]*(,[A-Za-z_][A-Za-z0-9_]*=[^,]*)*)?$ ]] || {
			echo "--vs $2: want NAME:KEY=VALUE[,KEY=VALUE...] (NAME in a-z, 0-9 and -)" >&2
			exit 2
		}
		variants+=("$2")
		shift
		;;
	-h | --help) usage ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
rounds=${1:-6}
dur=${2:-6}
[[ $rounds =~ ^[1-9][0-9]*$ && $dur =~ ^[1-9][0-9]*$ && $# -le 2 ]] || usage
[ $benthos_on = 1 ] || [ $durable = 0 ] || { echo "--durable needs Benthos: drop --no-benthos" >&2; exit 2; }
[ $benthos_on = 1 ] || [ ${#variants[@]} -gt 0 ] || { echo "--no-benthos leaves gatekeeper alone: add a --vs" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
for c in wrk curl python3 pgrep setsid gcloud go; do
	command -v "$c" >/dev/null || { echo "peers.sh needs $c" >&2; exit 2; }
done
tmp=$(mktemp -d /tmp/peers.XXXXXX)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
# ticks: CPU ticks (utime + stime) used so far by the given pids and their
# threads; the fields after the command name, which may hold spaces.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12+$13}'))); done; echo "$t"; }

# build_benthos [sql]: the path of the Benthos binary, built once into the
# cache from bench/benthos (its own module, so that the service's go.mod
# carries none of Benthos's dependencies).
build_benthos() {
	local tags=() out=${XDG_CACHE_HOME:-$HOME/.cache}/gatekeeper-bench/benthos-v4.27.0
	if [ "${1:-}" = sql ]; then tags=(-tags sql); out=$out-sql; fi
	if [ ! -x "$out" ]; then
		echo "building Benthos v4.27.0${1:+ with its $1 components} into $out (once; a few minutes)..." >&2
		mkdir -p "$(dirname "$out")"
		(cd "$root/bench/benthos" && go build "${tags[@]}" -o "$out.partial" . && mv "$out.partial" "$out")
	fi
	echo "$out"
}

[ $benthos_on = 1 ] && benthos=$(build_benthos)
[ $durable = 1 ] && benthos_sql=$(build_benthos sql)
(cd "$root" && go build -o "$tmp/gatekeeper" ./cmd/gatekeeper)

start_emulator
# The emulator's CPU is that of every process in its group (gcloud starts java).
emupids() { pgrep -g "$emu" | tr '\n' ' '; }

declare -A pid url
systems=()
# start_gatekeeper NAME BINARY [KEY=VALUE...]: one ingest-only gatekeeper
# with topics and subscriptions of its own, in a directory of its own (its
# outbox).
start_gatekeeper() {
	local name=$1 bin=$2 hp
	shift 2
	hp=$(port)
	mkdir -p "$tmp/run-$name"
	(cd "$tmp/run-$name" && exec "${clean_env[@]}" AUTH=none PUBSUB_EMULATOR_HOST=127.0.0.1:$ep PROJECT_ID=test \
		TOPIC_ID="peers-$name" SUBSCRIPTION_ID="peers-$name-sub" POISON_SUBSCRIPTION_ID="peers-$name-poison-sub" \
		HTTP_ADDR=127.0.0.1:$hp ADMIN_ADDR=off LOG_LEVEL=warn OUTBOX_REDELIVER_AFTER=1h "$@" \
		"$bin" serve --stages=ingest >"$tmp/run-$name/log" 2>&1) &
	pids+=($!)
	pid[$name]=$!
	url[$name]=http://127.0.0.1:$hp
	systems+=("$name")
	wait_http "http://127.0.0.1:$hp/readyz" || { cat "$tmp/run-$name/log" >&2; return 1; }
}
# start_benthos NAME BINARY [--set ...]: one Benthos with its own topic,
# which it does not create, and that topic's subscription.
start_benthos() {
	local name=$1 bin=$2 bp
	shift 2
	curl -fs -X PUT "$api/topics/$name-topic" >/dev/null
	curl -fs -X PUT -H 'Content-Type: application/json' -d "{\"topic\":\"projects/test/topics/$name-topic\"}" \
		"$api/subscriptions/$name-sub" >/dev/null
	bp=$(port)
	"${clean_env[@]}" PUBSUB_EMULATOR_HOST=127.0.0.1:$ep BENTHOS_ADDR=127.0.0.1:$bp \
		BENTHOS_SCHEMA="$root/bench/benthos/schema.json" BENTHOS_TOPIC="$name-topic" \
		"$bin" -c "$root/bench/benthos/benthos.yaml" "$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	pid[$name]=$!
	url[$name]=http://127.0.0.1:$bp
	systems+=("$name")
	wait_http "http://127.0.0.1:$bp/api/activities" any || { cat "$tmp/$name.log" >&2; return 1; }
}

start_gatekeeper gatekeeper "$tmp/gatekeeper"
for v in "${variants[@]}"; do
	name=${v%%:*}
	case $name in gatekeeper | benthos | benthos-sqlite) echo "--vs $v: $name is taken" >&2; exit 2 ;; esac
	[ -z "${pid[$name]:-}" ] || { echo "--vs $v: $name is taken" >&2; exit 2; }
	bin=$tmp/gatekeeper
	settings=()
	IFS=, read -r -a kvs <<<"${v#*:}"
	for kv in "${kvs[@]}"; do
		case $kv in
		bin=*) bin=${kv#bin=} ;;
		*) settings+=("$kv") ;;
		esac
	done
	[ -x "$bin" ] || { echo "--vs $v: $bin is not an executable" >&2; exit 2; }
	start_gatekeeper "$name" "$bin" "${settings[@]}"
done
if [ $benthos_on = 1 ]; then
	start_benthos benthos "$benthos"
	[ $durable = 1 ] && start_benthos benthos-sqlite "$benthos_sql" --set "buffer.sqlite.path=$tmp/benthos-buffer.db"
fi

run() { # system -> "rps p99 cpu-us/req emulator-cpu-us/req non-2xx socket-errors"
	local s=$1 e before ebefore out reqs hz
	e=$(emupids)
	[ -n "$e" ] || { echo "the emulator is gone" >&2; return 1; }
	kill -0 "${pid[$s]}" 2>/dev/null || { echo "$s is gone" >&2; return 1; }
	hz=$(getconf CLK_TCK)
	before=$(ticks "${pid[$s]}")
	# shellcheck disable=SC2086
	ebefore=$(ticks $e)
	out=$(timeout $((dur + 30)) wrk -t1 -c256 -d"${dur}s" --latency -s "$root/bench/post.lua" "${url[$s]}/api/activities" 2>&1)
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	[ "${reqs:-0}" -gt 0 ] || { printf 'wrk against %s answered nothing:\n%s\n' "$s" "$out" >&2; return 1; }
	# shellcheck disable=SC2086
	echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") \
$(((($(ticks "${pid[$s]}") - before) * 1000000 / hz + reqs / 2) / reqs)) $(((($(ticks $e) - ebefore) * 1000000 / hz + reqs / 2) / reqs)) \
$(awk '/Non-2xx/ {n=$5} END {print n+0}' <<<"$out") \
$(awk -F'[ ,]+' '/Socket errors/ {n=$5+$7+$9+$11} END {print n+0}' <<<"$out")"
}

echo "systems: ${systems[*]}; $rounds rounds of ${dur}s each, wrk -t1 -c256, after one warm-up round; $(nproc) cores"
for s in "${systems[@]}"; do line=$(run "$s"); done # warm every process and the emulator's JVM
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %-15s %5s %10s %10s %10s %12s %8s %8s\n' round system load req/s p99 CPU-us/req emulator-us/req non-2xx sock-err
for r in $(seq 1 "$rounds"); do
	order=("${systems[@]}")
	if [ $((r % 2)) = 0 ]; then
		order=()
		for ((i = ${#systems[@]} - 1; i >= 0; i--)); do order+=("${systems[$i]}"); done
	fi
	for s in "${order[@]}"; do
		load=$(cut -d' ' -f1 /proc/loadavg)
		line=$(run "$s")
		read -r rps p99 cpu ecpu n2x serr <<<"$line"
		printf '%-5s %-15s %5s %10s %10s %10s %12s %8s %8s\n' "$r" "$s" "$load" "$rps" "$p99" "$cpu" "$ecpu" "$n2x" "$serr" | tee -a "$tmp/runs"
	done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/runs" "${systems[@]}" <<'PY'
import math, statistics, sys
runs, systems = sys.argv[1], sys.argv[2:]
rows = {s: {} for s in systems}
flagged = []
for line in open(runs):
    r, s, load, rps, _p99, cpu, ecpu, n2x, serr = line.split()
    rows[s][int(r)] = dict(load=float(load), rps=float(rps), cpu=int(cpu), ecpu=int(ecpu))
    if int(n2x) or int(serr):
        flagged.append(f"round {r} {s}: {n2x} non-2xx, {serr} socket errors")
med = statistics.median
def span(v, f="{:.0f}"):
    return f"{f.format(med(v))} ({f.format(min(v))}-{f.format(max(v))})"
loads = [x["load"] for s in systems for x in rows[s].values()]
print(f"over {len(rows[systems[0]])} rounds, load average {min(loads):.1f}-{max(loads):.1f} (median {med(loads):.1f}); "
      "median (range):")
print(f"  {'system':15} {'req/s':>20} {'CPU-us/req':>16} {'emulator-us/req':>16} {'both':>16}")
for s in systems:
    v = list(rows[s].values())
    print(f"  {s:15} {span([x['rps'] for x in v]):>20} {span([x['cpu'] for x in v]):>16} "
          f"{span([x['ecpu'] for x in v]):>16} {span([x['cpu'] + x['ecpu'] for x in v]):>16}")
def sign_p(k, n):
    # Two-sided sign test: how likely k or more of n rounds on one side (or
    # as many on the other) would be if the two systems were alike.
    k = max(k, n - k)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n)
g = systems[0]
for s in systems[1:]:
    common = sorted(set(rows[g]) & set(rows[s]))
    n = len(common)
    print(f"{g} / {s}, round by round over {n} rounds: median (range), rounds where {g} did better, sign test p")
    for key, label, better in (("rps", "req/s", 1), ("cpu", "CPU-us/req", -1), ("ecpu", "emulator-us/req", -1),
                               ("both", "CPU-us/req with the emulator's", -1)):
        val = (lambda x: x["cpu"] + x["ecpu"]) if key == "both" else (lambda x, k=key: x[k])
        r = [val(rows[g][i]) / val(rows[s][i]) for i in common if val(rows[s][i])]
        k = sum((x - 1) * better > 0 for x in r)
        print(f"  {label:31} {span(r, '{:.2f}'):>18}  {k:3} of {len(r)}  p={sign_p(k, len(r)):.3f}")
for f in flagged:
    print("flagged:", f)
PY
