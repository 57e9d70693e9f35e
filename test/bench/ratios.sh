#!/usr/bin/env bash
# Runs test/bench's benchmarks interleaved (-cpu 1, reference and handler alternating
# per round) and prints ns/op, B/op, allocs/op and each handler benchmark's ratio to
# the reference of the same size and match (median over rounds).
#
#   test/bench/ratios.sh                 # 5 rounds of 1s per benchmark
#   test/bench/ratios.sh -count 8 -benchtime 2s -out /tmp/bench.txt
#   test/bench/ratios.sh -sizes typical -json
#
# BENCHCOUNT and BENCHTIME set the defaults of -count and -benchtime.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${GO:-go}" run ./test/bench/ratios -count "${BENCHCOUNT:-5}" -benchtime "${BENCHTIME:-1s}" "$@"
