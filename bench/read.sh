#!/usr/bin/env bash
# Reads through carto_fdw beside curl, against a throwaway carto-sim (issue #4's benchmark).
#   bench/read.sh [ROWS]            (default 1000000)
# Measures, in one run:
#   1. COPY (SELECT * FROM ft) TO '/dev/null' through the foreign table (scan_method copy) vs curl of the
#      same COPY statement from /copyto to /dev/null: rows/s and their ratio (goal >= 0.7);
#   2. a point lookup by cartodb_id through the foreign table (one /sql request) vs curl of the same /sql
#      request: mean latency over N lookups;
#   3. the backend's peak memory (VmHWM from /proc) after reading ROWS rows vs 10k rows (goal: within 20 MB);
#   4. optionally (OGR=1) ogr_fdw (GDAL's Carto driver) as a peer, on a smaller table.
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

"$ROOT/scripts/carto-sim-down" --dir "$DIR/sim" --purge >/dev/null 2>&1 || true
eval "$("$ROOT/scripts/carto-sim-up" --dir "$DIR/sim" 2>"$DIR/sim-up.log")"
"$ROOT/scripts/pg-cluster" stop "$DIR/local" >/dev/null 2>&1 || true
rm -rf "$DIR/local"
port=$(free_port)
"$ROOT/scripts/pg-cluster" start "$DIR/local" "$port"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres PGOPTIONS='-c lc_messages=C'
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
now() { date +%s.%N; }
sql_api() { curl -sS --max-time 600 -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=$1"; }

say "carto-sim $CARTO_SIM_URL, local PostgreSQL port $port; creating $ROWS rows on the sim..."
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
CREATE FOREIGN TABLE ft10k (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read_10k', scan_method 'copy');
CREATE FOREIGN TABLE ft_auto (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER carto OPTIONS (table_name 'bench_read');
SQL
remote_copy=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft" | sed -n 's/^ *Remote SQL: //p')
remote_lookup=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_auto WHERE cartodb_id = 424242" | sed -n 's/^ *Remote SQL: //p')
endpoint_lookup=$("${PSQL[@]}" -Atc "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_auto WHERE cartodb_id = 424242" | sed -n 's/^ *CARTO endpoint: //p')
say "remote COPY: $remote_copy"
say "point lookup ($endpoint_lookup): $remote_lookup"

# 1. Throughput. Best of 3 for each (the machine is shared); the sim serves both the same way.
fdw_best=999999 curl_best=999999 bytes=0
for i in 1 2 3; do
  t0=$(now)
  bytes=$(curl -sS -o /dev/null -w '%{size_download}' -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" \
    --data-urlencode "q=$remote_copy")
  t=$(echo "$(now) - $t0" | bc -l); curl_best=$(echo "if ($t < $curl_best) $t else $curl_best" | bc -l)
  t0=$(now)
  "${PSQL[@]}" -c "COPY (SELECT * FROM ft) TO '/dev/null'"
  t=$(echo "$(now) - $t0" | bc -l); fdw_best=$(echo "if ($t < $fdw_best) $t else $fdw_best" | bc -l)
  say "run $i: curl best ${curl_best}s, carto_fdw best ${fdw_best}s"
done
# The local raw limit for the same rows: the very bytes of /copyto, saved to a file and read through file_fdw
# (PostgreSQL's own COPY parser and the same input functions) into the same COPY TO /dev/null. carto_fdw does
# this work too, on the backend thread; the network side runs beside it.
curl -sS -o "$DIR/rows.copy" -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" --data-urlencode "q=$remote_copy"
"${PSQL[@]}" -v file="$DIR/rows.copy" <<'SQL'
CREATE EXTENSION IF NOT EXISTS file_fdw;
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE ft_file (cartodb_id int, the_geom geometry(Point, 4326), name text, price numeric, n int, seen timestamptz)
  SERVER files OPTIONS (filename :'file', format 'text');
SQL
file_best=999999
for i in 1 2 3; do
  t0=$(now)
  "${PSQL[@]}" -c "COPY (SELECT * FROM ft_file) TO '/dev/null'"
  t=$(echo "$(now) - $t0" | bc -l); file_best=$(echo "if ($t < $file_best) $t else $file_best" | bc -l)
done
rm -f "$DIR/rows.copy"
say "file_fdw over the same bytes: best ${file_best}s"
file_rps=$(echo "$ROWS / $file_best" | bc -l)
file_ratio=$(echo "$file_best / $fdw_best" | bc -l)
curl_rps=$(echo "$ROWS / $curl_best" | bc -l)
fdw_rps=$(echo "$ROWS / $fdw_best" | bc -l)
ratio=$(echo "$fdw_rps / $curl_rps" | bc -l)
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
| COPY (SELECT * FROM ft) TO '/dev/null', scan_method copy (best of 3) | $(printf '%.2f s, %.0f rows/s' "$fdw_best" "$fdw_rps") | $(printf '%.2f s, %.0f rows/s, %d bytes' "$curl_best" "$curl_rps" "$bytes") | $(printf '%.2f' "$ratio") (goal >= 0.7) |
| the same rows from a file of /copyto's bytes through file_fdw (local raw limit: PostgreSQL's COPY parser and input functions, no network), same COPY TO /dev/null | $(printf '%.2f s, %.0f rows/s' "$fdw_best" "$fdw_rps") | file_fdw $(printf '%.2f s, %.0f rows/s' "$file_best" "$file_rps") | $(printf '%.2f' "$file_ratio") of file_fdw's rate |
| point lookup by cartodb_id (mean of $LOOKUPS, endpoint $endpoint_lookup) | $(printf '%.2f ms' "$fdw_lookup_ms") | $(printf '%.2f ms' "$curl_lookup_ms") | requests seen by the sim: $lookup_requests |
| backend VmHWM, 10k rows | $((hwm10k / 1024)) MB (baseline $((base10k / 1024)) MB) | | |
| backend VmHWM, $ROWS rows | $((hwm1m / 1024)) MB (baseline $((base1m / 1024)) MB) | | difference $(((hwm1m - hwm10k) / 1024)) MB (goal: within 20 MB) |
${ogr_line}

Checksums: carto_fdw \`$fdw_sum\`, CARTO \`$sim_sum\` ($( [ "$fdw_sum" = "$sim_sum" ] && echo equal || echo DIFFERENT)).
Remote COPY: \`$remote_copy\`
EOF
