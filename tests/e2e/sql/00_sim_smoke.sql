-- 00_sim_smoke: the e2e plumbing works: the installed extension loads, the runner's variables are set,
-- and the carto-sim answers like CARTO's SQL API. Needs none of the FDW's own code.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
SELECT e.extname, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'carto_fdw';
-- The wrapper comes with the extension; no server exists yet.
\dew
\des
-- The runner passes the sim's address and keys as psql variables (they vary from run to run: check only their shape).
SELECT :'sim_url' ~ '^http://127\.0\.0\.1:[0-9]+$' AS sim_url_ok,
       :'base_url' = :'sim_url' || '/user/' || :'sim_user' AS base_url_ok,
       :'sim_user' AS sim_user,
       length(:'api_key') > 0 AND length(:'readonly_key') > 0 AS keys_ok,
       :'sim_admin' = :'sim_url' || '/_sim' AS sim_admin_ok;
-- The sim answers /sql with the demo user's master key ("time" varies: masked).
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql?q=select%201%20as%20x" | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
-- The user can also come from the Host name (cloud style), and the key from the query string.
\! curl -sS -H "Host: $CARTO_SIM_USER.carto.com" "$CARTO_SIM_URL/api/v2/sql?q=select%202%20as%20y&api_key=$CARTO_SIM_API_KEY" | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
-- An unknown key is a 401, an unknown user a 404.
\! curl -sS -w ' %{http_code}\n' -u "$CARTO_SIM_USER:not-a-key" "$CARTO_SIM_BASE_URL/api/v2/sql?q=select%201"
\! curl -sS -w ' %{http_code}\n' "$CARTO_SIM_URL/user/nobody/api/v2/sql?q=select%201"
-- The sim's admin API (:'sim_admin', never part of CARTO): health, and the request log a test can inspect.
\! curl -sS "$CARTO_SIM_ADMIN/health"; echo
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null; curl -sS -o /dev/null -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql?q=select%203"
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json, sys; [print(e["method"], e["path"], e["user"], e["key_kind"], e["status"]) for e in json.load(sys.stdin)]'
