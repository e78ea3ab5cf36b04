#!/usr/bin/env bash
# Write throughput of carto_fdw against a carto-sim of its own (not a timed test; numbers in bench/RESULTS.md):
#   * INSERT INTO foreign_table SELECT ... FROM generate_series(1, N): point geometry, text, numeric, int, timestamptz,
#     into a plain remote table and into a cartodbfied one, N = 10k and 1M (each in a fresh backend; its peak RSS,
#     VmHWM from /proc, is reported), in COPY binary (copy_format auto) and in COPY text (copy_format 'text');
#   * the same rows pre-made as a gzip -1 COPY text file sent by `curl -T -` (chunked) to /copyfrom — the floor —
#     and the same as a gzip -1 COPY binary file;
#   * the same rows generated in the run by the database's own COPY, piped through gzip -1 into curl — the raw
#     limit for rows that must be produced (as carto_fdw's are);
#   * "the seed's way": INSERT ... VALUES of 1000 rows per /sql request, on fewer rows, extrapolated.
#   bench/write.sh [ROWS] [SEED_ROWS]     (defaults 1000000 and 50000; BENCH_TABLES=bw_plain for one table only)
# Uses the installed carto_fdw of $PG_CONFIG (install it with `cargo pgrx install --release --pg-config $PG_CONFIG`).
# Work files go to .run/bench-write; the clusters and the sim are stopped at the end.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
# carto-sim optimised, as a real server would be: a debug build takes CPU from the side being measured.
export CARTO_SIM_PROFILE=${CARTO_SIM_PROFILE:-release}
ROWS=${1:-1000000}
SEED_ROWS=${2:-50000}
PSQL="$PGBIN/psql"
DIR=$ROOT/.run/bench-write
mkdir -p "$DIR"
LOCAL=$DIR/local SIMDIR=$DIR/sim

LINK=${LINK:-}
cleanup() {
  if [ -n "$LINK" ]; then tc qdisc del dev lo root >/dev/null 2>&1 || true; fi
  "$ROOT/scripts/carto-sim-down" --dir "$SIMDIR" >/dev/null 2>&1 || true
  "$ROOT/scripts/pg-cluster" stop "$LOCAL" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$ROOT/scripts/carto-sim-down" --dir "$SIMDIR" --purge >/dev/null 2>&1 || true
eval "$("$ROOT/scripts/carto-sim-up" --dir "$SIMDIR" 2>"$DIR/sim-up.log")"
# LINK=<tc rate>: the traffic from and to the sim's port goes through an emulated link (bench/link.sh; only in a
# private network namespace, e.g. `unshare -n` with lo brought up).
if [ -n "$LINK" ]; then
  HERE=$(cd "$(dirname "$0")" && pwd)
  . "$HERE/link.sh"
  shape_link "$(printf '%s\n' "$CARTO_SIM_URL" | sed -E 's#^https?://[^/:]+:([0-9]+).*#\1#')"
  echo "traffic from/to the sim shaped to $LINK" >&2
fi
port=$(free_port)
"$ROOT/scripts/pg-cluster" stop "$LOCAL" >/dev/null 2>&1 || true
rm -rf "$LOCAL"
"$ROOT/scripts/pg-cluster" start "$LOCAL" "$port" shared_buffers=128MB
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=bench PGTZ=UTC
"$PSQL" -X -q -d postgres -c "CREATE DATABASE bench"

sql() { curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=$1" "$CARTO_SIM_BASE_URL/api/v2/sql"; }
remote_count() { sql "SELECT count(*) AS n FROM $1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["n"])'; }
reset_remote() {
  sql "DROP TABLE IF EXISTS bw_plain, bw_carto;
       CREATE TABLE bw_plain (the_geom geometry(Point,4326), name text, n numeric, i int, ts timestamptz);
       CREATE TABLE bw_carto (cartodb_id serial PRIMARY KEY, the_geom geometry(Geometry,4326),
         the_geom_webmercator geometry(Geometry,3857), name text, n numeric, i int, ts timestamptz);
       SELECT cdb_cartodbfytable('bw_carto')" >/dev/null
}
reset_remote

# COMPRESSION_LEVEL: the server's compression_level (default: the option's default).
"$PSQL" -X -q -v ON_ERROR_STOP=1 -v base_url="$CARTO_SIM_BASE_URL" -v api_key="$CARTO_SIM_API_KEY" \
  -v level="${COMPRESSION_LEVEL:-2}" <<'SQL'
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', compression_level :'level');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE bw_plain (the_geom geometry(Point,4326), name text, n numeric, i int, ts timestamptz) SERVER carto;
CREATE FOREIGN TABLE bw_carto (cartodb_id int, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857),
  name text, n numeric, i int, ts timestamptz) SERVER carto;
CREATE FOREIGN TABLE bw_plain_text (the_geom geometry(Point,4326), name text, n numeric, i int, ts timestamptz) SERVER carto
  OPTIONS (table_name 'bw_plain', copy_format 'text');
CREATE FOREIGN TABLE bw_carto_text (cartodb_id int, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857),
  name text, n numeric, i int, ts timestamptz) SERVER carto OPTIONS (table_name 'bw_carto', copy_format 'text');
SQL

# The rows, generated inline in the statement as the issue's `INSERT INTO ft SELECT ... FROM generate_series(1, N)`
# (a set-returning SQL function would not be inlined: its rows would go through a tuplestore spilled to disk first,
# which costs more than the transfer being measured). Float arithmetic for the coordinates, so no numeric-to-float
# conversion runs per row; the values are exact halves and quarters either way.
rows_sql() {
  printf "SELECT ST_SetSRID(ST_MakePoint((g %% 360) - 179.5::float8, (g %% 170) - 84.75::float8), 4326) AS the_geom, 'name ' || g AS name, g * 1.5 AS n, g AS i, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' AS ts FROM generate_series(1, %s) g" "$1"
}

RESULTS=$DIR/results.tsv
: >"$RESULTS"
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$RESULTS"; }

# One statement in a fresh backend: prints its seconds, then the backend's peak RSS (VmHWM, kB).
backend_run() {
  "$PSQL" -X -q -At -v ON_ERROR_STOP=1 <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BPID :pid
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
$1;
SELECT extract(epoch FROM clock_timestamp()) - :t0;
\! awk '/VmHWM/ {print \$2}' /proc/\$BPID/status
\! for f in /proc/\$BPID/task/\$BPID/stat /proc/\$BPID/stat; do awk -v hz="\$(getconf CLK_TCK)" '{sub(/^.*\\) /, ""); print (\$12 + \$13) / hz}' \$f; done
SQL
}

# carto_fdw: one fresh backend per run; seconds of the whole autocommit INSERT (the COPY is finished at commit).
fdw_run() {  # fdw_run TABLE N [FOREIGN_TABLE LABEL]: the foreign table's format (copy_format) is in its LABEL
  local table=$1 n=$2 ft=${3:-$1} label=${4:-carto_fdw INSERT (binary)} out
  out=$(backend_run "INSERT INTO $ft (the_geom, name, n, i, ts) $(rows_sql "$n")")
  local secs kb main total
  secs=$(echo "$out" | sed -n 1p) kb=$(echo "$out" | sed -n 2p) main=$(echo "$out" | sed -n 3p) total=$(echo "$out" | sed -n 4p)
  local got; got=$(remote_count "$table")
  [ "$got" = "$n" ] || { echo "bw: $table has $got rows, expected $n" >&2; exit 1; }
  # CPU seconds of the backend thread and of the other threads (gzip and HTTP on the I/O runtime).
  record "$label" "$table" "$n" "$secs" "$kb" "$(printf '%.2f + %.2f' "$main" "$(echo "$total - $main" | bc -l)")"
  echo "$label into $table, $n rows: ${secs}s, backend VmHWM ${kb} kB" >&2
}

# The database's own COPY of the same rows to /dev/null, in a fresh backend: what producing the rows costs in time
# and memory without carto_fdw (PostGIS's point constructors alone raise a backend's peak RSS by ~60 MB over 1M rows,
# a plateau that does not grow further: compare carto_fdw's VmHWM with this, not with zero).
produce_run() {
  local n=$1 out
  out=$(backend_run "COPY ($(rows_sql "$n")) TO '/dev/null'")
  local secs kb
  secs=$(echo "$out" | sed -n 1p) kb=$(echo "$out" | sed -n 2p)
  record "COPY (rows) TO /dev/null (producing the rows only)" "-" "$n" "$secs" "$kb"
  echo "producing $n rows (database COPY to /dev/null): ${secs}s, backend VmHWM ${kb} kB" >&2
}

# curl: the same rows as a gzip -1 COPY text file, sent chunked (-T -) to /copyfrom.
# The same rows generated by the database and sent by its own COPY through gzip -1 and curl, in one pipeline:
# the raw limit for rows that must be produced in the run (carto_fdw produces them too; curl_run's file is free).
pipe_run() {
  local table=$1 n=$2 t0 t1
  local q="COPY $table (the_geom, name, n, i, ts) FROM STDIN" url
  url="$CARTO_SIM_BASE_URL/api/v2/sql/copyfrom?q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$q")"
  t0=$(date +%s.%N)
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -c "\copy ($(rows_sql "$n")) TO STDOUT" | gzip -1 \
    | curl -sS -X POST -T - -H "Content-Type: application/octet-stream" -H "Content-Encoding: gzip" \
        -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" "$url" >"$DIR/pipe.out"
  t1=$(date +%s.%N)
  grep -q "\"total_rows\":$n" "$DIR/pipe.out" || { echo "pipe: $(cat "$DIR/pipe.out")" >&2; exit 1; }
  local secs; secs=$(python3 -c "print(round($t1 - $t0, 3))")
  record "COPY TO STDOUT | gzip -1 | curl" "$table" "$n" "$secs" ""
  echo "database COPY | gzip | curl to $table, $n rows: ${secs}s" >&2
}

curl_run() {  # curl_run TABLE N [binary]
  local table=$1 n=$2 fmt=${3:-text}
  local file=$DIR/rows_$2.$fmt.gz opt="" suffix=""
  [ "$fmt" = binary ] && opt=" (FORMAT binary)" suffix=" (binary)"
  [ -f "$file" ] || "$PSQL" -X -q -c "\copy ($(rows_sql "$n")) TO STDOUT$opt" | gzip -1 >"$file"
  local q="COPY $table (the_geom, name, n, i, ts) FROM STDIN$opt" t0 t1
  t0=$(date +%s.%N)
  local url; url="$CARTO_SIM_BASE_URL/api/v2/sql/copyfrom?q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$q")"
  curl -sS -X POST -T - -H "Content-Type: application/octet-stream" -H "Content-Encoding: gzip" \
    -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" "$url" <"$file" >"$DIR/curl.out"
  t1=$(date +%s.%N)
  grep -q "\"total_rows\":$n" "$DIR/curl.out" || { echo "curl: $(cat "$DIR/curl.out")" >&2; exit 1; }
  local secs; secs=$(python3 -c "print(round($t1 - $t0, 3))")
  record "curl -T - gzip -1 /copyfrom$suffix" "$table" "$n" "$secs" ""
  echo "curl$suffix to $table, $n rows: ${secs}s ($(stat -c %s "$file") bytes gzip)" >&2
}

# The seed's way: INSERT ... VALUES of 1000 rows per /sql request, one request after the other.
seed_run() {
  local table=$1 n=$2 d=$DIR/seed
  rm -rf "$d"; mkdir -p "$d"
  "$PSQL" -X -q -At -c "
    SELECT format('INSERT INTO $table (the_geom, name, n, i, ts) VALUES %s',
                  string_agg(format('(%L::geometry, %L, %s, %s, %L)', the_geom, name, n, i, ts), ', '))
      FROM (SELECT *, (row_number() OVER () - 1) / 1000 AS chunk FROM ($(rows_sql "$n")) s) r GROUP BY chunk ORDER BY chunk" \
    | split -l 1 - "$d/q_"
  local t0 t1 f
  t0=$(date +%s.%N)
  for f in "$d"/q_*; do
    curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q@$f" "$CARTO_SIM_BASE_URL/api/v2/sql" \
      | grep -q '"total_rows":1000' || { echo "seed request failed" >&2; exit 1; }
  done
  t1=$(date +%s.%N)
  local secs; secs=$(python3 -c "print(round($t1 - $t0, 3))")
  record "INSERT VALUES x1000 via /sql (seed)" "$table" "$n" "$secs" ""
  echo "seed way into $table, $n rows: ${secs}s" >&2
}

# PERF=1: where the backend's time goes in one binary INSERT of ROWS rows (perf over all its threads).
perf_run() {
  local table=$1 n=$2
  rm -f "$DIR/perf.pid"
  "$PSQL" -X -q -At -v ON_ERROR_STOP=1 >/dev/null <<SQL &
SELECT pg_backend_pid() AS pid \gset
\setenv BPID :pid
\! echo \$BPID > $DIR/perf.pid
SELECT pg_sleep(1.5);
INSERT INTO $table (the_geom, name, n, i, ts) $(rows_sql "$n");
SQL
  for _ in $(seq 1 20); do [ -s "$DIR/perf.pid" ] && break; sleep 0.1; done
  perf record -q -F 1999 -g -p "$(cat "$DIR/perf.pid")" -o "$DIR/perf.data" -- sleep 5 >/dev/null 2>&1 || true
  wait || true
  perf report -i "$DIR/perf.data" --no-children --stdio --sort dso,symbol -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40 > "$DIR/perf-top.txt" || true
  echo "perf: top symbols of the backend in $DIR/perf-top.txt" >&2
}

# Each method REPEAT times (default 3; the report keeps the best): the machine is shared.
for n in 10000 "$ROWS"; do produce_run "$n"; done
for table in ${BENCH_TABLES:-bw_plain bw_carto}; do
  for n in 10000 "$ROWS"; do
    for _ in $(seq 1 "${REPEAT:-3}"); do
      reset_remote; fdw_run "$table" "$n"
      reset_remote; fdw_run "$table" "$n" "${table}_text" "carto_fdw INSERT (text)"
      reset_remote; curl_run "$table" "$n"
      reset_remote; curl_run "$table" "$n" binary
      reset_remote; pipe_run "$table" "$n"
    done
  done
  reset_remote; seed_run "$table" "$SEED_ROWS"
done
if [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null; then reset_remote; perf_run bw_plain "$ROWS"; fi

# The report: rows/s, and each method against curl on the same table and row count (seed: extrapolated).
python3 - "$RESULTS" "$ROWS" "${BENCH_CSV:-$DIR/results.csv}" <<'PY'
import sys, csv
raw = list(csv.reader(open(sys.argv[1]), delimiter="\t"))
# Repeated runs: the best time of each method, table and size (and the highest VmHWM seen).
best = {}
for m, t, n, s, kb, *cpu in raw:
    k = (m, t, n)
    if k not in best:
        best[k] = [m, t, n, s, kb, cpu[0] if cpu else ""]
    else:
        if float(s) < float(best[k][3]):
            best[k][3] = s
            best[k][5] = cpu[0] if cpu else ""
        if kb and (not best[k][4] or int(kb) > int(best[k][4])):
            best[k][4] = kb
rows = list(best.values())
big = int(sys.argv[2])
curl = {(r[1], int(r[2])): float(r[3]) for r in rows if r[0] == "curl -T - gzip -1 /copyfrom"}
pipe = {(r[1], int(r[2])): float(r[3]) for r in rows if r[0].startswith("COPY TO STDOUT")}
print("| method | table | rows | seconds | rows/s | vs curl of a pre-made file | vs database COPY \\| gzip \\| curl | backend VmHWM | CPU s: backend thread + I/O threads |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|")
for m, t, n, s, kb, cpu in rows:
    n, s = int(n), float(s)
    rps = n / s if s > 0 else 0
    c = curl.get((t, n)) or (curl.get((t, big)) * n / big if (t, big) in curl else None)
    ratio = f"{s / c:.2f}x the time" if c else ""
    p = pipe.get((t, n))
    pratio = f"{s / p:.2f}x the time" if p and not m.startswith("INSERT VALUES") else ""
    extra = ""
    if m.startswith("INSERT VALUES"):
        extra = f" ({big} rows extrapolated: {big / rps:.0f} s)"
    mem = f"{int(kb) / 1024:.0f} MB" if kb else ""
    print(f"| {m} | {t} | {n} | {s:.2f}{extra} | {rps:,.0f} | {ratio} | {pratio} | {mem} | {cpu} |")
    with open(sys.argv[3], "a") as f:
        f.write(f"write {t},{m},{n},{rps}\n")
PY
