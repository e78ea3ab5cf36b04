#!/usr/bin/env bash
# curl as in CARTO's documentation, against a running CARTO (or carto-sim):
#   chunked gzip upload of a .csv.gz to /copyfrom, download with /copyto to a file, byte-exact comparison.
# Usage: SQL_URL=http://127.0.0.1:PORT/user/demo/api/v2/sql API_KEY=... USER_NAME=demo curl_roundtrip.sh WORKDIR
# Prints "curl round trip: OK" and exits 0 when everything matched; exits nonzero at the first mismatch.
set -euo pipefail
: "${SQL_URL:?}" "${API_KEY:?}" "${USER_NAME:?}"
work=${1:?WORKDIR}
mkdir -p "$work"
t=curl_roundtrip_$$
fail() { echo "FAIL: $*" >&2; exit 1; }

sql() {  # POST a query (form body), print the JSON answer; fail on a non-2xx status
  curl -sS --fail-with-body -X POST --data-urlencode "q=$1" --data-urlencode "api_key=$API_KEY" "$SQL_URL"
}

sql "CREATE TABLE $t (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326), the_geom_webmercator geometry(Point,3857), name text, amount numeric(12,3), seen date)" >/dev/null
sql "SELECT CDB_CartodbfyTable('$t')" | grep -q "\"cdb_cartodbfytable\":\"$t\"" || fail "cartodbfy"

# 20000 rows of CSV with quotes, commas, unicode, empty strings and NULLs (empty unquoted field = NULL)
python3 - "$work/data.csv" <<'PY'
import sys
with open(sys.argv[1], "w", encoding="utf-8", newline="") as f:
    for i in range(1, 20001):
        name = ['plain', 'with, comma', 'with "quotes"', 'ñandú €', ''][i % 5]
        name = '"' + name.replace('"', '""') + '"' if name else '""'
        amount = '' if i % 7 == 0 else f"{i * 1.125:.3f}"
        f.write(f"{i},SRID=4326;POINT({i % 360 - 180} {i % 170 - 85}),{name},{amount},2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}\n")
PY
gzip -1 -c "$work/data.csv" > "$work/data.csv.gz"

# --- upload: exactly the command of CARTO's docs
copyfrom_q="COPY $t (cartodb_id, the_geom, name, amount, seen) FROM STDIN WITH (FORMAT csv)"
answer=$(curl -sS -X POST \
  -H "Transfer-Encoding: chunked" -H "Content-Encoding: gzip" -H "Content-Type: application/octet-stream" \
  --data-binary @"$work/data.csv.gz" \
  "$SQL_URL/copyfrom?api_key=$API_KEY&q=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$copyfrom_q")")
echo "copyfrom answer: $answer"
python3 -c 'import json,sys; a=json.loads(sys.argv[1]); assert a["total_rows"] == 20000, a; assert isinstance(a["time"], (int, float)), a' "$answer" \
  || fail "copyfrom answer"

# --- download with GET and the key in the URL, to a file
copyto_q="COPY (SELECT cartodb_id, ST_AsEWKT(the_geom), name, amount, seen FROM $t ORDER BY cartodb_id) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE (name))"
status=$(curl -sS -G -o "$work/out.csv" -D "$work/headers" -w '%{http_code}' \
  --data-urlencode "q=$copyto_q" --data-urlencode "api_key=$API_KEY" --data-urlencode "filename=export.csv" \
  "$SQL_URL/copyto")
[ "$status" = 200 ] || fail "copyto status $status: $(head -c 500 "$work/out.csv")"
grep -qi '^content-type: application/octet-stream' "$work/headers" || fail "copyto content-type: $(cat "$work/headers")"
grep -qi '^content-disposition: attachment; *filename=export.csv' "$work/headers" || fail "content-disposition: $(cat "$work/headers")"
cmp "$work/data.csv" "$work/out.csv" || fail "copyto output differs from the uploaded file"

# --- download again with POST (form body) and HTTP Basic auth, gzip accepted, streamed into gunzip if needed
curl -sS -X POST -u "$USER_NAME:$API_KEY" --compressed -o "$work/out2.csv" \
  --data-urlencode "q=$copyto_q" "$SQL_URL/copyto"
cmp "$work/data.csv" "$work/out2.csv" || fail "copyto (POST, basic auth) output differs"

# --- what the database really holds (the_geom_webmercator filled by the trigger during COPY)
check=$(sql "SELECT count(*) AS n, count(the_geom_webmercator) AS m, count(amount) AS a, sum(amount)::text AS s FROM $t")
echo "check: $check"
python3 - "$check" <<'PY' || fail "table contents"
import json, sys
r = json.loads(sys.argv[1])["rows"][0]
total = sum(i * 1125 for i in range(1, 20001) if i % 7)  # thousandths, exact
assert r["n"] == 20000 and r["m"] == 20000, r
assert r["a"] == 20000 - 20000 // 7, r
assert r["s"] == f"{total // 1000}.{total % 1000:03d}", (r, total)
PY

# --- a bad gzip body is refused with CARTO's message and nothing is loaded
printf 'this is not gzip' > "$work/bad.gz"
bad=$(curl -sS -X POST -H "Content-Encoding: gzip" -H "Content-Type: application/octet-stream" \
  --data-binary @"$work/bad.gz" -w '\n%{http_code}' \
  "$SQL_URL/copyfrom?api_key=$API_KEY&q=$(python3 -c 'import urllib.parse,sys;print(urllib.parse.quote(sys.argv[1]))' "COPY $t (name) FROM STDIN")")
echo "bad gzip answer: $bad"
[ "$(tail -n1 <<<"$bad")" = 400 ] || fail "bad gzip status"
head -n1 <<<"$bad" | grep -q '"error":\["Error while gunzipping' || fail "bad gzip message"
n=$(sql "SELECT count(*) AS n FROM $t" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["n"])')
[ "$n" = 20000 ] || fail "rows after the bad upload: $n"

# --- HTTP Basic auth: the right user works, another user's name with this key is refused (403), a wrong key 401
code() { curl -sS -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code -u "$USER_NAME:$API_KEY" "$SQL_URL?q=SELECT%201")" = 200 ] || fail "basic auth"
[ "$(code -u "someoneelse:$API_KEY" "$SQL_URL?q=SELECT%201")" = 403 ] || fail "basic auth, other user"
[ "$(code -u "$USER_NAME:wrong-key" "$SQL_URL?q=SELECT%201")" = 401 ] || fail "basic auth, wrong key"

sql "DROP TABLE $t" >/dev/null
echo "curl round trip: OK"
