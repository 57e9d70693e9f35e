#!/usr/bin/env bash
# Load scenarios of the performance issue, against test/load/serverless (the real
# webhook.Server, admission path and default bundle; a static ServiceAccount instead
# of the informer-backed sources: see serverless/main.go), for the policy engine and
# for test/bench's plain-Go reference served by the same binary with --reference.
#
# Server pinned to core 0 with GOMAXPROCS=1, load generator pinned to core 1; TLS
# (RSA-2048 throwaway certificate) and HTTP/2 on loopback; benchdata's typical pod;
# ServiceAccount with role-arn, regional STS and token expiration; --aws-default-region
# us-west-2. Scenarios, each after a warm-up:
#   1. closed loop, c=32, a new pod template per request (cache misses)
#   2. closed loop, c=32, the same pod (cache hits)
#   3. open loop, 400 req/s, misses; latency from each request's scheduled send time
# Every 10th response's patch is compared with `pod-identity-webhook eval -o patch` for
# the same pod (a mismatch counts as an error).
#
#   test/load/run.sh                          # engine, then reference
#   MODES=engine DURATION=5s test/load/run.sh
#   OUT=/tmp/load-results test/load/run.sh    # also keep the JSON reports there
#
# Settings (environment): MODES ("engine reference"), SIZE (typical), CONCURRENCY (32),
# RATE (400), DURATION (10s), WARMUP (2s), PORT (18443), METRICS_PORT (19998),
# SERVER_CPU (0), LOAD_CPU (1), OUT (a temporary directory), CHECK_EVERY (10).
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
MODES=${MODES:-engine reference}
SIZE=${SIZE:-typical}
CONCURRENCY=${CONCURRENCY:-32}
RATE=${RATE:-400}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
PORT=${PORT:-18443}
METRICS_PORT=${METRICS_PORT:-19998}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CHECK_EVERY=${CHECK_EVERY:-10}

work=$(mktemp -d "${TMPDIR:-/tmp}/piw-load.XXXXXX")
OUT=${OUT:-$work/results}
mkdir -p "$OUT"
server_pid=""
cleanup() {
	if [[ -n "$server_pid" ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work/bin"
}
trap cleanup EXIT

# pin CPU: the taskset prefix that pins to CPU (none without taskset or that CPU).
# taskset execs the command, so $! of a backgrounded pinned command is its PID.
pin() {
	if command -v taskset >/dev/null && [[ $(nproc --all) -gt $1 ]]; then
		echo taskset -c "$1"
	fi
}

echo "building into $work/bin" >&2
mkdir -p "$work/bin"
$GO build -o "$work/bin/serverless" ./test/load/serverless
$GO build -o "$work/bin/load" ./test/load
$GO build -o "$work/bin/pod-identity-webhook" ./cmd/pod-identity-webhook
$GO run ./test/load/gencert -dir "$work/certs"

# The patch every response must carry, computed by eval for the same pod.
"$work/bin/load" --print-pod --size "$SIZE" --vary >"$work/pod.json"
cat >"$work/sa.yaml" <<'EOF'
apiVersion: v1
kind: ServiceAccount
metadata:
  name: payments-sa
  namespace: payments
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/payments
    eks.amazonaws.com/sts-regional-endpoints: "true"
    eks.amazonaws.com/token-expiration: "86400"
EOF
"$work/bin/pod-identity-webhook" eval --pod "$work/pod.json" --service-account "$work/sa.yaml" \
	--aws-default-region us-west-2 -o patch >"$work/patch.json"

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); server on CPU $SERVER_CPU (GOMAXPROCS=1), load generator on CPU $LOAD_CPU"
url="https://127.0.0.1:$PORT/mutate"
for mode in $MODES; do
	args=()
	[[ $mode == reference ]] && args+=(--reference)
	if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
		echo "port $PORT is in use: set PORT" >&2
		exit 1
	fi
	# shellcheck disable=SC2046 # pin's output is the command prefix, split on purpose
	GOMAXPROCS=1 $(pin "$SERVER_CPU") "$work/bin/serverless" --gomaxprocs 1 --port "$PORT" --metrics-port "$METRICS_PORT" \
		--cert "$work/certs/tls.crt" --key "$work/certs/tls.key" "${args[@]}" >"$work/server-$mode.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 300); do
		grep -qs "^serving $mode" "$work/server-$mode.log" && break
		if ! kill -0 "$server_pid" 2>/dev/null; then
			cat "$work/server-$mode.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	grep "^serving" "$work/server-$mode.log"
	# shellcheck disable=SC2207
	load=($(pin "$LOAD_CPU") "$work/bin/load" --url "$url" --ca "$work/certs/tls.crt" --wait 30s --size "$SIZE"
		--server-pid "$server_pid" --duration "$DURATION" --warmup "$WARMUP"
		--check-patch "$work/patch.json" --check-every "$CHECK_EVERY")
	for scenario in misses hits open; do
		case $scenario in
		misses) extra=(--concurrency "$CONCURRENCY" --vary) ;;
		hits) extra=(--concurrency "$CONCURRENCY") ;;
		open) extra=(--rate "$RATE" --vary) ;;
		esac
		"${load[@]}" "${extra[@]}" --label "$mode: $scenario" --json-out "$OUT/$mode-$scenario.json"
	done
	kill "$server_pid"
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
done
echo "JSON reports in $OUT; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
