#!/usr/bin/env bash
# Reads through carto_fdw beside curl, against a throwaway carto-sim (issue #4's benchmark).
#   bench/read.sh [ROWS]            (default 1000000)
# Measures, in one run:
#   1. COPY (SELECT * FROM ft) TO '/dev/null' through the foreign table (scan_method copy) in COPY binary
#      (copy_format auto) and in COPY text (copy_format 'text') vs curl of the same COPY statements (text and
#      binary) from /copyto to /dev/null: rows/s and ratios (goal: binary >= 1.0x curl of text), CPU seconds of
#      the backend and of the sim per run; and PostgreSQL's own COPY of the same bytes (file_fdw, text and binary);
#   2. a point lookup by cartodb_id through the foreign table (one /sql request) vs curl of the same /sql
#      request: mean latency over N lookups;
#   3. the backend's peak memory (VmHWM from /proc) after reading ROWS rows vs 10k rows (goal: within 20 MB);
#   4. optionally (OGR=1) ogr_fdw (GDAL's Carto driver) as a peer, on a smaller table;
#   5. (DEFAULTS=1, the default) fast by default: hand-declared column types beside the exact ones, a never-analyzed
#      table beside an analyzed one, a spatial filter through a server without options (section 1c below).
# Uses the extension installed for $PG_CONFIG (install a release build first:
# cargo pgrx install --release --pg-config $PG_CONFIG) and prints a Markdown table for bench/RESULTS.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../scripts/lib.sh"
# carto-sim optimised, as a real server would be: a debug build takes CPU from the side being measured.
export CARTO_SIM_PROFILE=${CARTO_SIM_PROFILE:-release}
ROWS=${1:-1000000}
LOOKUPS=${LOOKUPS:-50}
OGR_ROWS=${OGR_ROWS:-20000}
DIR=$ROOT/.run/bench-read
mkdir -p "$DIR"

cleanup() {
  "$ROOT/scripts/carto-sim-down" --dir "$DIR/sim" >/dev/null 2>&1 || true
  "$ROOT/scripts/pg-cluster" stop "$DIR/local" >/dev/null 2>&1 || true
}
trap cleanup EXIT

. "$HERE/env.sh"  # bench_up DIR, PSQL, now, sql_api
bench_up "$DIR"

say "carto-sim $CARTO_SIM_URL, local PostgreSQL port $PGPORT; creating $ROWS rows on the sim..."
sql_api "DROP TABLE IF EXISTS bench_read; DROP TABLE IF EXISTS bench_read_10k;
CREATE TABLE bench_read (cartodb_id serial PRIMARY KEY, the_geom geometry(Point, 4326), name text, price numeric,
  n int, seen timestamptz);
INSERT INTO bench_read (the_geom, name, price, n, seen)
SELECT ST_SetSRID(ST_MakePoint(g % 360 - 180 + 0.123456, g % 170 - 85 + 0.654321), 4326), 'place number ' || g,
       round((g::bigint * 7919 % 100000) / 100.0, 2), (g::bigint * 31 % 100000)::int, timestamptz '2026-01-01 00:00+00' + g * interval '1 minute'
  FROM generate_series(1, $ROWS) g;
CREATE TABLE bench_read_10k AS SELECT * FROM bench_read WHERE cartodb_id <= 10000;
ALTER TABLE bench_read_10k ADD PRIMARY KEY (cartodb_id);
ANALYZE bench_read; ANALYZE bench_read_10k" | grep -v '"error"' >/dev/null || die "could not create the tables on the sim"

"${PSQL[@]}" -v base_url="$CARTO_SIM_BASE_URL" -v api_key="$CARTO_SIM_API_KEY" <<'SQL'
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE ft (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read', scan_method 'copy');
CREATE FOREIGN TABLE ft_text (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read', scan_method 'copy', copy_format 'text');
CREATE FOREIGN TABLE ft10k (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read_10k', scan_method 'copy');
CREATE FOREIGN TABLE ft_auto (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read');
SQL
remote_copy=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft" | sed -n 's/^ *Remote SQL: //p')
remote_copy_text=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_text" | sed -n 's/^ *Remote SQL: //p')
transport=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft" | sed -n 's/^ *CARTO transport: //p')
remote_lookup=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_auto WHERE cartodb_id = 424242" | sed -n 's/^ *Remote SQL: //p')
endpoint_lookup=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_auto WHERE cartodb_id = 424242" | sed -n 's/^ *CARTO endpoint: //p')
say "remote COPY ($transport): $remote_copy"
say "remote COPY (text): $remote_copy_text"
say "point lookup ($endpoint_lookup): $remote_lookup"

# 1. Throughput. Best of 3 for each (the machine is shared); the sim serves all the same way. CPU seconds of the
# sim (its process and its PostgreSQL's backends) and of the local backend, from /proc, for the best run.
sim_pid=$(pgrep -f "carto-sim serve.*$DIR/sim" | head -1 || true)
proc_cpu() {  # proc_cpu PID -> utime+stime of the process and its reaped children, in seconds
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); print ($12 + $13 + $14 + $15) / hz}' "/proc/$1/stat"
}
sim_cpu() {  # the sim process and every process of the sim's PostgreSQL cluster
  local total pid
  total=$(proc_cpu "$sim_pid")
  for pid in $(pgrep -f "postgres.*$DIR/sim" || true); do total=$(echo "$total + $(proc_cpu "$pid")" | bc -l); done
  echo "$total"
}
time_curl() {  # time_curl SQL -> "seconds bytes sim_cpu"
  local t0 c0 b
  c0=$(sim_cpu); t0=$(now)
  b=$(curl -sS -o /dev/null -w '%{size_download}' -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" \
    --data-urlencode "q=$1")
  echo "$(echo "$(now) - $t0" | bc -l) $b $(echo "$(sim_cpu) - $c0" | bc -l)"
}
time_fdw() {  # time_fdw TABLE [STATEMENT] -> "seconds backend_thread_cpu io_threads_cpu sim_cpu"
  local c0 out stmt=${2:-"COPY (SELECT * FROM $1) TO '/dev/null'"}
  c0=$(sim_cpu)
  out=$("${PSQL[@]}" -At <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BPID :pid
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
\o /dev/null
$stmt;
\o
SELECT extract(epoch FROM clock_timestamp()) - :t0;
\! for f in /proc/\$BPID/task/\$BPID/stat /proc/\$BPID/stat; do awk -v hz="\$(getconf CLK_TCK)" '{sub(/^.*\\) /, ""); print (\$12 + \$13) / hz}' \$f; done
SQL
)
  # seconds, CPU of the backend thread, CPU of the other threads (the network runtime), CPU of the sim
  local secs main total
  read -r secs main total <<<"$(echo "$out" | tr '\n' ' ')"
  echo "$secs $main $(echo "$total - $main" | bc -l) $(echo "$(sim_cpu) - $c0" | bc -l)"
}
best() {  # best CMD ARG -> the output line of the fastest of 3 runs (first field: seconds)
  local i line out=""
  for i in 1 2 3; do
    line=$("$@")
    if [ -z "$out" ] || [ "$(echo "${line%% *} < ${out%% *}" | bc -l)" = 1 ]; then out=$line; fi
  done
  echo "$out"
}
read -r curl_best bytes curl_sim_cpu < <(best time_curl "$remote_copy_text")
read -r curlb_best bytes_bin curlb_sim_cpu < <(best time_curl "$remote_copy")
read -r fdw_best fdw_cpu fdw_io fdw_sim_cpu < <(best time_fdw ft)
read -r fdwt_best fdwt_cpu fdwt_io fdwt_sim_cpu < <(best time_fdw ft_text)
# The same read without the COPY TO's sink: every row made into a tuple of all columns and handed to the
# executor, which drops it (EXPLAIN ANALYZE without timing). The sink prints every value as text (geometry
# as hex EWKB, timestamptz, numeric), work curl never does; file_fdw is measured both ways below too.
nosink() { echo "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, COSTS OFF) SELECT * FROM $1"; }
read -r fdwn_best fdwn_cpu fdwn_io fdwn_sim_cpu < <(best time_fdw ft "$(nosink ft)")
say "curl text ${curl_best}s, curl binary ${curlb_best}s, carto_fdw $transport ${fdw_best}s, carto_fdw text ${fdwt_best}s"
# 1a. PERF=1: where the backend's time goes in one COPY binary read (perf over the backend's threads).
perf_top=""
if [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  rm -f "$DIR/perf.pid"
  "${PSQL[@]}" -At >/dev/null <<SQL &
SELECT pg_backend_pid() AS pid \gset
\setenv BPID :pid
\! echo \$BPID > $DIR/perf.pid
SELECT pg_sleep(1.5);
COPY (SELECT * FROM ft) TO '/dev/null';
SQL
  for _ in $(seq 1 20); do [ -s "$DIR/perf.pid" ] && break; sleep 0.1; done
  perf record -q -F 1999 -g -p "$(cat "$DIR/perf.pid")" -o "$DIR/perf.data" -- sleep 4 >/dev/null 2>&1 || true
  wait || true
  perf_top=$(perf report -i "$DIR/perf.data" --no-children --stdio --sort dso,symbol -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | head -25) || true
  printf '%s\n' "$perf_top" > "$DIR/perf-top.txt"
  say "perf: top symbols of the backend in $DIR/perf-top.txt"
fi

# 1b. A wide table: 20 columns of mixed types, binary vs text vs curl of the text COPY.
wide_line=""
if [ "${WIDE:-1}" = 1 ]; then
  wide_cols="id int, g geometry(Point,4326), t1 text, t2 text, t3 varchar(20), n1 numeric, n2 numeric(12,3), f1 float8,
    f2 float4, i1 int, i2 int8, i3 int2, b bool, d date, ts timestamp, tz timestamptz, iv interval, u uuid, j jsonb, a int[]"
  sql_api "DROP TABLE IF EXISTS bench_wide; CREATE TABLE bench_wide ($wide_cols);
INSERT INTO bench_wide SELECT g, ST_SetSRID(ST_MakePoint(g % 360 - 180 + 0.5, g % 170 - 85 + 0.25), 4326), 'text ' || g,
  md5(g::text), 'v' || (g % 1000), g * 1.5, (g % 100000) / 7.0, g / 3.0, g / 7.0, g, g::int8 * 1000003, (g % 30000)::int2,
  g % 2 = 0, date '2020-01-01' + g % 3000, timestamp '2026-01-01' + g * interval '1 second',
  timestamptz '2026-01-01 00:00+00' + g * interval '1 second', g * interval '1 minute',
  md5(g::text)::uuid, jsonb_build_object('k', g, 's', 'x' || g), ARRAY[g, g + 1, g + 2]
  FROM generate_series(1, $ROWS) g; ANALYZE bench_wide" | grep -v '"error"' >/dev/null || die "could not create bench_wide"
  "${PSQL[@]}" -c "CREATE FOREIGN TABLE ft_wide ($wide_cols) SERVER carto OPTIONS (table_name 'bench_wide', scan_method 'copy');
    CREATE FOREIGN TABLE ft_wide_text ($wide_cols) SERVER carto OPTIONS (table_name 'bench_wide', scan_method 'copy', copy_format 'text')"
  wide_copy_text=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_wide_text" | sed -n 's/^ *Remote SQL: //p')
  wide_transport=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_wide" | sed -n 's/^ *CARTO transport: //p')
  read -r wcurl_best wbytes wcurl_sim < <(best time_curl "$wide_copy_text")
  read -r wfdw_best wfdw_cpu wfdw_io wfdw_sim < <(best time_fdw ft_wide)
  read -r wfdwt_best wfdwt_cpu wfdwt_io wfdwt_sim < <(best time_fdw ft_wide_text)
  {
    echo "read wide,carto_fdw binary,$ROWS,$(echo "$ROWS / $wfdw_best" | bc -l)"
    echo "read wide,carto_fdw text,$ROWS,$(echo "$ROWS / $wfdwt_best" | bc -l)"
    echo "read wide,curl text,$ROWS,$(echo "$ROWS / $wcurl_best" | bc -l)"
  } >> "${BENCH_CSV:-$DIR/results.csv}"
  wide_line=$(printf '| wide table (20 columns), %s | %.2f s (%.0f rows/s; CPU backend %.2f s + I/O %.2f s, sim %.2f s); copy_format text %.2f s (%.0f rows/s; CPU backend %.2f s) | curl text %.2f s (%.0f rows/s, %d bytes; CPU sim %.2f s) | %.2f (binary) / %.2f (text) of curl text |' \
    "$wide_transport" "$wfdw_best" "$(echo "$ROWS / $wfdw_best" | bc -l)" "$wfdw_cpu" "$wfdw_io" "$wfdw_sim" \
    "$wfdwt_best" "$(echo "$ROWS / $wfdwt_best" | bc -l)" "$wfdwt_cpu" "$wcurl_best" "$(echo "$ROWS / $wcurl_best" | bc -l)" "$wbytes" "$wcurl_sim" \
    "$(echo "$wcurl_best / $wfdw_best" | bc -l)" "$(echo "$wcurl_best / $wfdwt_best" | bc -l)")
  say "wide: carto_fdw $wide_transport ${wfdw_best}s, text ${wfdwt_best}s, curl text ${wcurl_best}s"
fi

# 1c. Fast by default (issue 21), in the same run:
#   - the table declared by hand with other types than CARTO's, as the README's example does (cartodb_id and n bigint
#     over integer, price float8 over numeric) beside the exact declaration, both without the sink (goal >= 0.9x);
#   - a never-analyzed copy of 300k rows (CREATE TABLE AS, autovacuum off, no index: CREATE INDEX would count its
#     rows) beside an analyzed one, through a server
#     made as the README makes it (no options), each read from a fresh session: CARTO requests (goal <= 3) and time
#     (goal <= 2x the analyzed one);
#   - a spatial filter over the ROWS rows through that server: CARTO requests (goal: shipped, one request).
defaults_lines=""
if [ "${DEFAULTS:-1}" = 1 ]; then
  sql_api "DROP TABLE IF EXISTS bench_fresh, bench_analyzed;
CREATE TABLE bench_fresh WITH (autovacuum_enabled = false) AS SELECT * FROM bench_read WHERE cartodb_id <= 300000;
CREATE TABLE bench_analyzed AS SELECT * FROM bench_read WHERE cartodb_id <= 300000;
ALTER TABLE bench_analyzed ADD PRIMARY KEY (cartodb_id);
ANALYZE bench_analyzed" | grep -v '"error"' >/dev/null || die "could not create bench_fresh"
  "${PSQL[@]}" -v base_url="$CARTO_SIM_BASE_URL" -v api_key="$CARTO_SIM_API_KEY" <<'SQL'
CREATE SERVER readme FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER readme OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE ft_hand (cartodb_id bigint, the_geom geometry(Point, 4326), name text, price float8, n bigint, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read', scan_method 'copy');
CREATE FOREIGN TABLE ft_fresh (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER readme OPTIONS (table_name 'bench_fresh');
CREATE FOREIGN TABLE ft_analyzed (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER readme OPTIONS (table_name 'bench_analyzed');
CREATE FOREIGN TABLE ft_readme (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER readme OPTIONS (table_name 'bench_read');
SQL
  hand_transport=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_hand" | sed -n 's/^ *Remote SQL: //p')
  read -r exact_best exact_cpu exact_io exact_sim < <(best time_fdw ft "$(nosink ft)")
  read -r hand_best hand_cpu hand_io hand_sim < <(best time_fdw ft_hand "$(nosink ft_hand)")
  requests() {  # requests CMD... -> "seconds requests" of the first run of a fresh session, requests from the sim's log
    local t
    curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
    read -r t _ < <("$@")
    echo "$t $(curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; c=collections.Counter(e["group"] for e in json.load(sys.stdin)); print(sum(c.values()), "(" + " ".join("%s=%d" % kv for kv in sorted(c.items())) + ")")')"
  }
  read -r fresh_t fresh_n fresh_detail < <(requests time_fdw ft_fresh "$(nosink ft_fresh)")
  read -r analyzed_t analyzed_n analyzed_detail < <(requests time_fdw ft_analyzed "$(nosink ft_analyzed)")
  spatial_q="SELECT count(*) FROM ft_readme WHERE ST_Intersects(the_geom, ST_MakeEnvelope(0, 0, 10, 10, 4326))"
  read -r spatial_t spatial_n spatial_detail < <(requests time_fdw ft_readme "$spatial_q")
  spatial_sql=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) $spatial_q" | sed -n 's/^ *Remote SQL: //p' | head -1)
  {
    echo "read defaults,carto_fdw exact types,$ROWS,$(echo "$ROWS / $exact_best" | bc -l)"
    echo "read defaults,carto_fdw hand-declared types,$ROWS,$(echo "$ROWS / $hand_best" | bc -l)"
  } >> "${BENCH_CSV:-$DIR/results.csv}"
  defaults_lines=$(printf '| hand-declared types (bigint over integer twice, float8 over numeric) vs exact, no sink | %.2f s (CPU backend %.2f s + I/O %.2f s, sim %.2f s) vs %.2f s (CPU backend %.2f s + I/O %.2f s, sim %.2f s) | | %.2f of the exact read (goal >= 0.9) |\n| never-analyzed 300k rows, README server, fresh session | %.2f s, %s requests %s | analyzed: %.2f s, %s requests %s | %.2fx the analyzed time (goal <= 2), %s requests (goal <= 3) |\n| spatial filter over %s rows, README server | %.2f s, %s requests %s | | Remote SQL: `%s` |' \
    "$hand_best" "$hand_cpu" "$hand_io" "$hand_sim" "$exact_best" "$exact_cpu" "$exact_io" "$exact_sim" "$(echo "$exact_best / $hand_best" | bc -l)" \
    "$fresh_t" "$fresh_n" "$fresh_detail" "$analyzed_t" "$analyzed_n" "$analyzed_detail" "$(echo "$fresh_t / $analyzed_t" | bc -l)" "$fresh_n" \
    "$ROWS" "$spatial_t" "$spatial_n" "$spatial_detail" "$spatial_sql")
  say "defaults: hand ${hand_best}s vs exact ${exact_best}s; fresh ${fresh_t}s/$fresh_n req vs analyzed ${analyzed_t}s/$analyzed_n req; spatial ${spatial_t}s/$spatial_n req"
  say "hand-declared remote SQL: $hand_transport"
fi

# The local raw limit for the same rows: the very bytes of /copyto, saved to a file and read through file_fdw
# (PostgreSQL's own COPY parser and the same input functions) into the same COPY TO /dev/null. carto_fdw does
# this work too, on the backend thread; the network side runs beside it.
curl -sS -o "$DIR/rows.copy" -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" --data-urlencode "q=$remote_copy_text"
curl -sS -o "$DIR/rows.bin" -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" --data-urlencode "q=$remote_copy"
"${PSQL[@]}" -v file="$DIR/rows.copy" -v bfile="$DIR/rows.bin" <<'SQL'
CREATE EXTENSION IF NOT EXISTS file_fdw;
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE ft_file (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER files OPTIONS (filename :'file', format 'text');
CREATE FOREIGN TABLE ft_file_bin (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER files OPTIONS (filename :'bfile', format 'binary');
SQL
file_best=999999 fileb_best=999999 filen_best=999999
for i in 1 2 3; do
  t0=$(now)
  "${PSQL[@]}" -c "$(nosink ft_file_bin)" >/dev/null
  t=$(echo "$(now) - $t0" | bc -l); filen_best=$(echo "if ($t < $filen_best) $t else $filen_best" | bc -l)
  t0=$(now)
  "${PSQL[@]}" -c "COPY (SELECT * FROM ft_file) TO '/dev/null'"
  t=$(echo "$(now) - $t0" | bc -l); file_best=$(echo "if ($t < $file_best) $t else $file_best" | bc -l)
  t0=$(now)
  "${PSQL[@]}" -c "COPY (SELECT * FROM ft_file_bin) TO '/dev/null'"
  t=$(echo "$(now) - $t0" | bc -l); fileb_best=$(echo "if ($t < $fileb_best) $t else $fileb_best" | bc -l)
done
rm -f "$DIR/rows.copy" "$DIR/rows.bin"
say "file_fdw over the same bytes: best ${file_best}s"
file_rps=$(echo "$ROWS / $file_best" | bc -l)
curl_rps=$(echo "$ROWS / $curl_best" | bc -l)
fdw_rps=$(echo "$ROWS / $fdw_best" | bc -l)
ratio=$(echo "$fdw_rps / $curl_rps" | bc -l)
curlb_rps=$(echo "$ROWS / $curlb_best" | bc -l)
fdwt_rps=$(echo "$ROWS / $fdwt_best" | bc -l)
ratio_t=$(echo "$fdwt_rps / $curl_rps" | bc -l)
fileb_rps=$(echo "$ROWS / $fileb_best" | bc -l)
fdwn_rps=$(echo "$ROWS / $fdwn_best" | bc -l)
filen_rps=$(echo "$ROWS / $filen_best" | bc -l)
# Machine-readable lines for bench/plot.py (method, rows, rows/s).
{
  echo "read,carto_fdw binary,$ROWS,$fdw_rps"; echo "read,carto_fdw text,$ROWS,$fdwt_rps"
  echo "read,curl text,$ROWS,$curl_rps"; echo "read,curl binary,$ROWS,$curlb_rps"
  echo "read,file_fdw text,$ROWS,$file_rps"; echo "read,file_fdw binary,$ROWS,$fileb_rps"
  echo "read no sink,carto_fdw binary,$ROWS,$fdwn_rps"; echo "read no sink,file_fdw binary,$ROWS,$filen_rps"
  echo "read no sink,curl text,$ROWS,$curl_rps"
} >> "${BENCH_CSV:-$DIR/results.csv}"
# The rows really arrived, exactly: count and a checksum through the FDW vs CARTO's own.
fdw_sum=$("${PSQL[@]}" -Atc "SELECT count(*) || ' ' || md5(string_agg(cartodb_id || the_geom::text || name || price || n || seen, ',' ORDER BY cartodb_id)) FROM ft")
sim_sum=$(sql_api "SELECT count(*) || ' ' || md5(string_agg(cartodb_id || the_geom::text || name || price || n || seen, ',' ORDER BY cartodb_id)) AS s FROM bench_read" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["s"])')

# 2. Point lookups: LOOKUPS different ids, one session, timed inside the backend; curl the same request.
curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
fdw_lookup_ms=$("${PSQL[@]}" -At 2>&1 <<SQL | sed -n 's/.*lookup_ms=//p'
SELECT count(*) FROM ft_auto WHERE cartodb_id = 1;
DO \$\$
DECLARE t0 timestamptz; r record; total float8 := 0;
BEGIN
  FOR i IN 1..$LOOKUPS LOOP
    t0 := clock_timestamp();
    EXECUTE format('SELECT * FROM ft_auto WHERE cartodb_id = %s', i * 9973 % $ROWS + 1) INTO r;
    total := total + extract(epoch FROM clock_timestamp() - t0);
  END LOOP;
  RAISE NOTICE 'lookup_ms=%', round((total / $LOOKUPS * 1000)::numeric, 2);
END \$\$;
SQL
)
lookup_requests=$(curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; c=collections.Counter(e["group"] for e in json.load(sys.stdin)); print(" ".join("%s=%d" % kv for kv in sorted(c.items())))')
curl_total=0
for i in $(seq 1 "$LOOKUPS"); do
  id=$((i * 9973 % ROWS + 1))
  t=$(curl -sS -o /dev/null -w '%{time_total}' -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" \
    --data-urlencode "q=${remote_lookup//424242/$id}")
  curl_total=$(echo "$curl_total + $t" | bc -l)
done
curl_lookup_ms=$(echo "$curl_total / $LOOKUPS * 1000" | bc -l)

# 3. Peak memory of a fresh backend: after connecting and a first tiny read, after 10k rows, after ROWS rows.
hwm() {  # hwm TABLE -> "base_kB after_kB"
  "${PSQL[@]}" -At <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BPID :pid
SELECT count(*) FROM ft_auto WHERE cartodb_id = 1 \g /dev/null
\! grep VmHWM /proc/\$BPID/status | awk '{printf "%s ", \$2}'
COPY (SELECT * FROM $1) TO '/dev/null';
\! grep VmHWM /proc/\$BPID/status | awk '{print \$2}'
SQL
}
read -r base10k hwm10k < <(hwm ft10k)
read -r base1m hwm1m < <(hwm ft)

# 4. ogr_fdw (GDAL's Carto driver: JSON pages of 500 rows) on OGR_ROWS rows, when installed and asked for.
ogr_line=""
if [ "${OGR:-1}" = 1 ] && [ -f "$("$PG_CONFIG" --sharedir)/extension/ogr_fdw.control" ]; then
  sql_api "DROP TABLE IF EXISTS bench_read_ogr; CREATE TABLE bench_read_ogr AS SELECT * FROM bench_read WHERE cartodb_id <= $OGR_ROWS;
    ALTER TABLE bench_read_ogr ADD PRIMARY KEY (cartodb_id)" >/dev/null
  "${PSQL[@]}" -v api_url="$CARTO_SIM_BASE_URL/api/v2/sql" -v api_key="$CARTO_SIM_API_KEY" <<'SQL'
CREATE EXTENSION IF NOT EXISTS ogr_fdw;
SELECT format('CARTO_API_URL=%s CARTO_API_KEY=%s', :'api_url', :'api_key') AS cfg \gset
CREATE SERVER ogr FOREIGN DATA WRAPPER ogr_fdw OPTIONS (datasource 'Carto:demo tables=bench_read_ogr', format 'Carto', config_options :'cfg');
CREATE FOREIGN TABLE ogr_t (fid bigint, cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamp)
  SERVER ogr OPTIONS (layer 'bench_read_ogr');
CREATE FOREIGN TABLE ft_ogr_peer (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read_ogr', scan_method 'copy');
SQL
  t0=$(now)
  ogr_count=$("${PSQL[@]}" -Atc "SELECT count(name) FROM ogr_t" 2>"$DIR/ogr.err" || echo "failed: $(head -c 200 "$DIR/ogr.err")")
  ogr_t=$(echo "$(now) - $t0" | bc -l)
  t0=$(now)
  peer_count=$("${PSQL[@]}" -Atc "SELECT count(name) FROM ft_ogr_peer")
  peer_t=$(echo "$(now) - $t0" | bc -l)
  ogr_line=$(printf '| ogr_fdw (GDAL Carto driver) vs carto_fdw, %s rows | ogr_fdw %.2f s (%s rows, %.0f rows/s) | carto_fdw %.2f s (%s rows, %.0f rows/s) |' \
    "$OGR_ROWS" "$ogr_t" "$ogr_count" "$(echo "$OGR_ROWS / $ogr_t" | bc -l)" "$peer_t" "$peer_count" "$(echo "$OGR_ROWS / $peer_t" | bc -l)")
fi

cat <<EOF

## reads ($(date -u +%Y-%m-%d), $(nproc) cores, $ROWS rows: point geometry, text, numeric, int, timestamptz)

| measure | carto_fdw | curl (same request) | ratio / goal |
|---|---|---|---|
| COPY (SELECT * FROM ft) TO '/dev/null', scan_method copy, $transport (best of 3) | $(printf '%.2f s, %.0f rows/s; CPU backend %.2f s + I/O threads %.2f s, sim %.2f s' "$fdw_best" "$fdw_rps" "$fdw_cpu" "$fdw_io" "$fdw_sim_cpu") | text: $(printf '%.2f s, %.0f rows/s, %d bytes; CPU sim %.2f s' "$curl_best" "$curl_rps" "$bytes" "$curl_sim_cpu") | $(printf '%.2f' "$ratio") of curl text (goal >= 1.0) |
| the same, copy_format 'text' | $(printf '%.2f s, %.0f rows/s; CPU backend %.2f s + I/O threads %.2f s, sim %.2f s' "$fdwt_best" "$fdwt_rps" "$fdwt_cpu" "$fdwt_io" "$fdwt_sim_cpu") | binary: $(printf '%.2f s, %.0f rows/s, %d bytes; CPU sim %.2f s' "$curlb_best" "$curlb_rps" "$bytes_bin" "$curlb_sim_cpu") | $(printf '%.2f' "$ratio_t") of curl text |
| the same binary read without the sink: \`EXPLAIN (ANALYZE, TIMING OFF) SELECT * FROM ft\` (every row made and handed to the executor, not printed) | $(printf '%.2f s, %.0f rows/s; CPU backend %.2f s + I/O threads %.2f s, sim %.2f s' "$fdwn_best" "$fdwn_rps" "$fdwn_cpu" "$fdwn_io" "$fdwn_sim_cpu") | text: $(printf '%.2f s' "$curl_best") | $(printf '%.2f' "$(echo "$curl_best / $fdwn_best" | bc -l)") of curl text (goal >= 1.0) |
| local raw limit: file_fdw over a file of /copyto's very bytes (PostgreSQL's own COPY FROM, no network), same COPY TO /dev/null | binary $(printf '%.2f s' "$fdw_best"), text $(printf '%.2f s' "$fdwt_best") | file_fdw binary $(printf '%.2f s, %.0f rows/s' "$fileb_best" "$fileb_rps"), text $(printf '%.2f s, %.0f rows/s' "$file_best" "$file_rps") | binary $(printf '%.2f' "$(echo "$fileb_best / $fdw_best" | bc -l)"), text $(printf '%.2f' "$(echo "$file_best / $fdwt_best" | bc -l)") of file_fdw's rate |
| the same without the sink (EXPLAIN ANALYZE) | binary $(printf '%.2f s' "$fdwn_best") | file_fdw binary $(printf '%.2f s, %.0f rows/s' "$filen_best" "$filen_rps") | $(printf '%.2f' "$(echo "$filen_best / $fdwn_best" | bc -l)") of file_fdw's rate |
| point lookup by cartodb_id (mean of $LOOKUPS, endpoint $endpoint_lookup) | $(printf '%.2f ms' "$fdw_lookup_ms") | $(printf '%.2f ms' "$curl_lookup_ms") | requests seen by the sim: $lookup_requests |
| backend VmHWM, 10k rows | $((hwm10k / 1024)) MB (baseline $((base10k / 1024)) MB) | | |
| backend VmHWM, $ROWS rows | $((hwm1m / 1024)) MB (baseline $((base1m / 1024)) MB) | | difference $(((hwm1m - hwm10k) / 1024)) MB (goal: within 20 MB) |
${wide_line}
$(printf '%b' "$defaults_lines")
${ogr_line}

$( [ -n "$perf_top" ] && printf 'perf, one COPY binary read, the backend process (all its threads):\n```\n%s\n```\n' "$perf_top")

Checksums: carto_fdw \`$fdw_sum\`, CARTO \`$sim_sum\` ($( [ "$fdw_sum" = "$sim_sum" ] && echo equal || echo DIFFERENT)).
Remote COPY: \`$remote_copy\`
EOF
