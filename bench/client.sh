#!/usr/bin/env bash
# carto-client throughput beside curl, against an in-process carto-sim, plus the COPY text codec's speed.
#   bench/client.sh [ROWS]        (default 500000 rows, ~40 MB of COPY text)
# Uses a throwaway PostgreSQL on port ${BENCH_PG_PORT:-55710} unless CARTO_SIM_ADMIN_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-500000}
if [ -z "${CARTO_SIM_ADMIN_URL:-}" ]; then
  port=${BENCH_PG_PORT:-55710}
  scripts/pg-cluster start "/tmp/carto-client-bench-pg" "$port"
  export CARTO_SIM_ADMIN_URL="host=127.0.0.1 port=$port user=postgres dbname=postgres"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/carto_fdw/target}
cargo run --quiet --release -p carto-client --example bench_copy -- "$ROWS"
