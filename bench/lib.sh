# lib.sh: what the bench scripts share. Source it after setting tmp (the
# run's scratch directory, removed at exit). It gives:
#   pids        the pids to stop at exit (append each process started);
#   emu         the emulator's process group, once start_emulator ran;
#   port        a free loopback port;
#   wait_http   URL [any]: wait until URL answers 2xx (any answer with any);
#   clean_env   env -i with only PATH and HOME, for the processes measured;
#   start_emulator: a fresh Pub/Sub emulator on a free port (or on
#               BENCH_EMULATOR_PORT); sets ep (its port) and api (its
#               project's REST base).
# Loopback only; every process is stopped by its pid (the emulator by its
# process group), and every wait is bounded.
: "${tmp:?set tmp before sourcing bench/lib.sh}"
pids=()
emu=""
cleanup() {
	local p i alive
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	[ -n "$emu" ] && { kill -TERM -- "-$emu" 2>/dev/null || true; }
	for i in $(seq 1 100); do
		alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ -n "$emu" ] && pgrep -g "$emu" >/dev/null && alive=1
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	[ -n "$emu" ] && { kill -KILL -- "-$emu" 2>/dev/null || true; }
	rm -rf "$tmp"
}
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() {
	local flags=-fs
	[ "${2:-}" = any ] && flags=-s
	for _ in $(seq 1 150); do curl $flags --max-time 2 -o /dev/null "$1" && return 0; sleep 0.2; done
	echo "no answer from $1" >&2
	return 1
}
clean_env=(env -i PATH="$PATH" HOME="$HOME")
start_emulator() {
	ep=${BENCH_EMULATOR_PORT:-$(port)}
	# Without job control setsid does not fork, so $! is the new session's
	# and process group's leader, and the group holds the emulator's java too.
	setsid gcloud beta emulators pubsub start --host-port="127.0.0.1:$ep" --project=test >"$tmp/emulator.log" 2>&1 &
	emu=$!
	api="http://127.0.0.1:$ep/v1/projects/test"
	wait_http "$api/topics"
}
