#!/usr/bin/env bash
# carto-client throughput beside curl, against an in-process carto-sim, plus the COPY text codec's speed.
#   bench/client.sh [ROWS]        (default 500000 rows, ~40 MB of COPY text)
#   bench/client.sh query [ROWS]  Client::query_rows over a /sql answer beside curl of the same POST, with the
#                                 process's peak RSS (default 2000000 rows, ~105 MB of JSON: issue 22's query)
# Uses a throwaway PostgreSQL on port ${BENCH_PG_PORT:-55710} unless CARTO_SIM_ADMIN_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLE=bench_copy ROWS=${1:-500000}
if [ "${1:-}" = query ]; then EXAMPLE=bench_query ROWS=${2:-2000000}; fi
if [ -z "${CARTO_SIM_ADMIN_URL:-}" ]; then
  port=${BENCH_PG_PORT:-55710}
  scripts/pg-cluster start "/tmp/carto-client-bench-pg" "$port"
  export CARTO_SIM_ADMIN_URL="host=127.0.0.1 port=$port user=postgres dbname=postgres"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/carto_fdw/target}
cargo run --quiet --release -p carto-client --example "$EXAMPLE" -- "$ROWS"
