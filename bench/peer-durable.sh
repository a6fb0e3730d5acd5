#!/usr/bin/env bash
# peer-durable.sh compares the ingest stage with Benthos when both keep what
# they accept on disk, beside the comparison compare.sh makes (Benthos
# keeping nothing). On one fresh Pub/Sub emulator it runs, side by side:
#   gatekeeper       --stages=ingest with the defaults (the outbox on, as on
#                    any emulator: a 200 comes after the payload is on disk,
#                    fsynced, and published), except AUTH=none (wrk sends no
#                    key), LOG_LEVEL=warn and ADMIN_ADDR=off;
#   benthos          compare.sh's Benthos v4.27 config (http_server ->
#                    json_schema -> gcp_pubsub), which keeps nothing: a 200
#                    comes after the publish;
#   benthos-sqlite   the same with Benthos's sqlite buffer, its durable one
#                    (a 200 comes after the message is in SQLite, which it
#                    opens with synchronous = 0, so without an fsync).
# Then it posts ../shared/bench/peer/post.lua with wrk -t1 -c256 to each in
# turn, ROUNDS times, and prints req/s, p99 and non-2xx per run, the
# medians, and gatekeeper's ratio to each Benthos round by round.
# Interleaved runs of processes that all stay up make the comparison fair on
# a machine whose speed drifts from minute to minute; compare.sh measures
# gatekeeper first, against a freshly started emulator.
#
# Usage (from the project root): bench/peer-durable.sh [ROUNDS] [SECONDS]
#   (default 4 rounds of 6 s)
# Needs: ../shared/bench/peer (compare.sh's Benthos config, schema and
# payload), wrk, curl, python3, pgrep, setsid, gcloud's Pub/Sub emulator, Go.
# Builds Benthos v4.27 with its sql components (for the sqlite buffer) once
# into ~/.cache/gatekeeper-peer/benthos-sql (a few minutes).
# Loopback only; every process it starts is stopped by its pid (the emulator
# by its process group), and every wait is bounded.
set -euo pipefail
shopt -s inherit_errexit
rounds=${1:-4}
dur=${2:-6}
[[ $rounds =~ ^[1-9][0-9]*$ && $dur =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [ROUNDS] [SECONDS]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
peer=$root/../shared/bench/peer
for f in benthos.yaml benthos-schema.json post.lua; do
	[ -f "$peer/$f" ] || { echo "$peer/$f is missing: this script uses compare.sh's Benthos setup" >&2; exit 2; }
done
tmp=$(mktemp -d /tmp/peer-durable.XXXXXX)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

benthos=$HOME/.cache/gatekeeper-peer/benthos-sql
if [ ! -x "$benthos" ]; then
	echo "building Benthos v4.27 with its sql components into $benthos (once)..." >&2
	mkdir -p "$tmp/benthos-build" "$(dirname "$benthos")"
	printf 'module benthoswrap\ngo 1.26\n' >"$tmp/benthos-build/go.mod"
	cat >"$tmp/benthos-build/main.go" <<'GO'
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/gcp"
	_ "github.com/benthosdev/benthos/v4/public/components/io"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	_ "github.com/benthosdev/benthos/v4/public/components/sql"
	"github.com/benthosdev/benthos/v4/public/service"
)

func main() { service.RunCLI(context.Background()) }
GO
	(cd "$tmp/benthos-build" && go get github.com/benthosdev/benthos/v4@v4.27.0 >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 &&
		go build -o "$benthos.partial" . && mv "$benthos.partial" "$benthos")
fi
(cd "$root" && go build -o "$tmp/gatekeeper" ./cmd/gatekeeper)

start_emulator

declare -A url
# Benthos publishes to topics it does not create; each gets a subscription,
# since a topic without one drops what it is sent.
for name in benthos benthos-sqlite; do
	curl -fs -X PUT "$api/topics/$name-topic" >/dev/null
	curl -fs -X PUT -H 'Content-Type: application/json' -d "{\"topic\":\"projects/test/topics/$name-topic\"}" \
		"$api/subscriptions/$name-sub" >/dev/null
	bp=$(port)
	sed -e "s#SCHEMA#$peer/benthos-schema.json#" -e "s#ADDR#127.0.0.1:$bp#" -e "s#benthos-topic#$name-topic#" \
		"$peer/benthos.yaml" >"$tmp/$name.yaml"
	grep -q "topic: $name-topic" "$tmp/$name.yaml" || { echo "$peer/benthos.yaml no longer names benthos-topic" >&2; exit 1; }
	if [ "$name" = benthos-sqlite ]; then
		printf 'buffer:\n  sqlite:\n    path: %s\n' "$tmp/benthos-buffer.db" >>"$tmp/$name.yaml"
	fi
	"${clean_env[@]}" PUBSUB_EMULATOR_HOST=127.0.0.1:$ep "$benthos" -c "$tmp/$name.yaml" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	url[$name]=http://127.0.0.1:$bp
done
gp=$(port)
mkdir -p "$tmp/run-gatekeeper"
(cd "$tmp/run-gatekeeper" && exec "${clean_env[@]}" AUTH=none PUBSUB_EMULATOR_HOST=127.0.0.1:$ep PROJECT_ID=test \
	HTTP_ADDR=127.0.0.1:$gp ADMIN_ADDR=off LOG_LEVEL=warn "$tmp/gatekeeper" serve --stages=ingest >"$tmp/run-gatekeeper/log" 2>&1) &
pids+=($!)
url[gatekeeper]=http://127.0.0.1:$gp
for s in gatekeeper benthos benthos-sqlite; do wait_http "${url[$s]}/api/activities" any; done

systems=(gatekeeper benthos benthos-sqlite)
run() { # system -> "rps p99 non-2xx socket-errors"
	local out reqs
	out=$(wrk -t1 -c256 -d"${dur}s" --latency -s "$peer/post.lua" "${url[$1]}/api/activities" 2>&1)
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	[ "${reqs:-0}" -gt 0 ] || { printf 'wrk against %s answered nothing:\n%s\n' "$1" "$out" >&2; return 1; }
	echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") \
$(awk '/Non-2xx/ {n=$5} END {print n+0}' <<<"$out") \
$(awk -F'[ ,]+' '/Socket errors/ {n=$5+$7+$9+$11} END {print n+0}' <<<"$out")"
}

for s in "${systems[@]}"; do line=$(run "$s"); done # warm the emulator's JVM and every process
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %10s %10s %8s %14s\n' system req/s p99 non-2xx socket-errors
for r in $(seq 1 "$rounds"); do
	for s in "${systems[@]}"; do
		line=$(run "$s")
		read -r rps p99 n2x serr <<<"$line"
		printf '%-15s %10s %10s %8s %14s\n' "$s" "$rps" "$p99" "$n2x" "$serr" | tee -a "$tmp/runs"
	done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, rps, _p99, _n2x, _serr = line.split()
    rows.setdefault(s, []).append(float(rps))
print("medians:")
for s, v in rows.items():
    print(f"  {s:15} {statistics.median(v):8.0f} req/s")
g = rows["gatekeeper"]
for s in ("benthos", "benthos-sqlite"):
    ratios = [x / y for x, y in zip(g, rows[s])]
    print(f"gatekeeper / {s:15} {min(ratios):.2f}-{max(ratios):.2f} by round, median {statistics.median(ratios):.2f}")
PY
