"""carto-python (CARTO's own client, `pip install carto`) against carto-sim.

Every test checks what really happened on the database side (psql as superuser), not only what the
client returned.
"""
import io
import json
import re
import time
import warnings

import pytest
from carto.auth import APIKeyAuthClient
from carto.exceptions import CartoException, CartoRateLimitException
from carto.sql import BatchSQLClient, CopySQLClient, SQLClient

from conftest import ALICE_KEY, DEMO_KEY, DEMO_MAPS_KEY, DEMO_READER_KEY, DEMO_WRITER_KEY, FREE_KEY

warnings.filterwarnings("ignore", message=".*unencrypted API key.*")


def auth(sim, user="demo", key=DEMO_KEY):
    return APIKeyAuthClient(base_url=sim.base_url(user), api_key=key)


def inner(exc_info):
    """carto-python wraps pyrestcli's exception (message, status_code) in CartoException."""
    e = exc_info.value
    assert isinstance(e, CartoException)
    return e.args[0]


def cartodbfied_table(sql, name, extra=", name text, n integer"):
    sql.send(f"CREATE TABLE {name} (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326), "
             f"the_geom_webmercator geometry(Point,3857){extra})")
    r = sql.send(f"SELECT CDB_CartodbfyTable('{name}')")
    assert r["rows"] == [{"cdb_cartodbfytable": name}]


# Values that a COPY text stream must carry exactly: escapes, unicode, NULL, empty string.
NAMES = ["plain", "tab\\there", "back\\\\slash", "new\\nline", "ñandú €", "emoji 😀", "\\N", "", "quote ' \""]


def name_of(i):
    return NAMES[i % len(NAMES)]


def point_of(i):
    return ((i % 359) - 179) + 0.5, ((i % 169) - 84) + 0.25


def copy_line(i):
    x, y = point_of(i)
    return f"{name_of(i)}\t{i}\tSRID=4326;POINT({x} {y})\n"


def expected_dump(n):
    """What `COPY (SELECT name, n, ST_AsEWKT(the_geom) ... ORDER BY n)` must give after loading copy_line(1..n)."""
    return "".join(copy_line(i) for i in range(1, n + 1)).encode()


def dump(sim, table, user="demo"):
    return sim.copy_out(f"COPY (SELECT name, n, ST_AsEWKT(the_geom) FROM {table} ORDER BY n) TO STDOUT", user=user)


# --------------------------------------------------------------------------------------------- SQLClient

def test_sql_send_rows_and_fields(sim):
    sql = SQLClient(auth(sim))
    r = sql.send("SELECT 1::int AS i, 2.5::float8 AS f, 'x'::text AS t, true AS b, "
                 "CDB_LatLng(1, 2) AS g, '2026-11-21'::date AS d, NULL::text AS z")
    hexgeom = sim.psql("SELECT CDB_LatLng(1, 2)").strip()
    assert hexgeom == "0101000020E61000000000000000000040000000000000F03F"
    assert r["total_rows"] == 1
    assert r["rows"] == [{"i": 1, "f": 2.5, "t": "x", "b": True, "g": hexgeom, "d": "2026-11-21T00:00:00Z", "z": None}]
    f = r["fields"]
    assert f["i"]["type"] == "number" and f["i"]["pgtype"] == "int4"
    assert f["f"]["type"] == "number"
    assert f["t"]["type"] == "string" and f["t"]["pgtype"] == "text"
    assert f["b"]["type"] == "boolean"
    assert f["g"]["type"] == "geometry"
    assert f["d"]["type"] == "date"
    assert isinstance(r["time"], (int, float))


def test_sql_send_get_and_post_agree(sim):
    sql = SQLClient(auth(sim))
    q = "SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 50) g ORDER BY g"
    got = sql.send(q, do_post=False)
    posted = sql.send(q)
    assert got["rows"] == posted["rows"]
    assert got["total_rows"] == 50
    assert got["rows"][49] == {"n": 50, "h": sim.psql("SELECT md5('50')").strip()}


def test_sql_send_error_raises_with_cartos_message(sim):
    sql = SQLClient(auth(sim))
    with pytest.raises(CartoException) as ei:
        sql.send("SELECT * FROM no_such_table")
    e = inner(ei)
    assert getattr(e, "status_code", None) == 400
    assert e.args[0] == ['relation "no_such_table" does not exist']


def test_sql_error_after_first_rows_comes_in_a_200_body(sim):
    # CARTO has already sent status 200 and the first rows: the error is appended to the JSON.
    sql = SQLClient(auth(sim))
    r = sql.send("SELECT CASE WHEN g < 3 THEN g ELSE 1 / (g - g) END AS v FROM generate_series(1, 5) g")
    assert r.get("error") == ["division by zero"]


def test_sql_several_statements(sim):
    sql = SQLClient(auth(sim))
    r = sql.send("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
    assert r["rows"] == [{"a": 1}, {"b": 2, "c": 3}]
    assert set(r["fields"]) == {"b", "c"}
    assert r["total_rows"] == 1


def test_sql_explicit_transaction_in_one_request_has_no_warnings(sim, unique):
    # GDAL's non-COPY writes send exactly this shape: "BEGIN;INSERT ...;COMMIT;"
    sql = SQLClient(auth(sim))
    sql.send(f"CREATE TABLE {unique} (x int)")
    r = sql.send(f"BEGIN;INSERT INTO {unique} VALUES (1), (2);COMMIT;")
    assert sim.psql(f"SELECT count(*) FROM {unique}").strip() == "2"
    assert "warnings" not in r, r["warnings"]


def test_sql_write_reports_affected_rows(sim, unique):
    sql = SQLClient(auth(sim))
    sql.send(f"CREATE TABLE {unique} (x int)")
    r = sql.send(f"INSERT INTO {unique} SELECT generate_series(1, 3)")
    assert r["rows"] == [] and r["total_rows"] == 3
    assert sim.psql(f"SELECT array_agg(x ORDER BY x) FROM {unique}").strip() == "{1,2,3}"


def test_sql_unknown_key_unknown_user_and_permissions(sim):
    with pytest.raises(CartoException) as ei:
        SQLClient(auth(sim, key="wrong-key")).send("SELECT 1")
    assert type(inner(ei)).__name__ == "UnauthorizedErrorException"

    with pytest.raises(CartoException) as ei:
        SQLClient(auth(sim, user="nobody", key="whatever")).send("SELECT 1")
    e = inner(ei)
    assert type(e).__name__ == "NotFoundException"
    assert e.args[0] == ["Sorry, we can't find CARTO user 'nobody'. "
                         "Please check that you have entered the correct domain."]

    reader = SQLClient(auth(sim, key=DEMO_READER_KEY))
    assert reader.send("SELECT name FROM reader_table")["rows"] == [{"name": "visible"}]
    with pytest.raises(CartoException) as ei:
        reader.send("INSERT INTO reader_table (name) VALUES ('nope')")
    assert type(inner(ei)).__name__ == "ForbiddenErrorException"
    assert sim.psql("SELECT count(*) FROM reader_table").strip() == "1"


def test_key_without_the_sql_grant_is_forbidden_everywhere(sim):
    """A maps-only key (no SQL grant): CARTO answers 403 {"error":["forbidden"]} on every SQL API request.
    carto-python raises pyrestcli's ForbiddenErrorException ("Access denied": the body is not read), except copyto,
    which reports "403 Client Error: forbidden"."""
    sim.clear_log()
    calls = (lambda a: SQLClient(a).send("SELECT 1"),
             lambda a: SQLClient(a).send("SELECT 1", do_post=False),
             lambda a: BatchSQLClient(a).create(["SELECT 1"]),
             lambda a: CopySQLClient(a).copyfrom("COPY reader_table (name) FROM stdin", [b"x\n"]))
    for call in calls:
        with pytest.raises(CartoException) as ei:
            call(auth(sim, key=DEMO_MAPS_KEY))
        e = inner(ei)
        assert type(e).__name__ == "ForbiddenErrorException", repr(e)
        assert e.args[0] == "Access denied"
    with pytest.raises(CartoException) as ei:
        CopySQLClient(auth(sim, key=DEMO_MAPS_KEY)).copyto("COPY reader_table TO stdout")
    assert str(ei.value) == "403 Client Error: forbidden"
    assert sim.psql("SELECT count(*) FROM reader_table").strip() == "1"
    groups = sorted((e["group"], e["status"]) for e in sim.requests_log())
    assert groups == [("copy_from", 403), ("copy_to", 403), ("job_create", 403), ("query", 403), ("query", 403)]


def test_sql_csv_download(sim, unique):
    """format=csv comes back raw (not parsed as JSON), every line ended with CRLF, values as CSV quotes them."""
    sql = SQLClient(auth(sim))
    sql.send(f"CREATE TABLE {unique} (cartodb_id int PRIMARY KEY, name text); "
             f"INSERT INTO {unique} VALUES (1, 'plain'), (2, 'a, \"quoted\" one'), (3, NULL)")
    body = sql.send(f"SELECT cartodb_id, name FROM {unique} ORDER BY 1", format="csv")
    assert isinstance(body, bytes)
    assert body == b'cartodb_id,name\r\n1,plain\r\n2,"a, ""quoted"" one"\r\n3,\r\n'
    import csv
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert rows == [["cartodb_id", "name"], ["1", "plain"], ["2", 'a, "quoted" one'], ["3", ""]]
    assert sql.send(f"SELECT name FROM {unique} ORDER BY 1", format="csv", do_post=False).startswith(b"name\r\n")


def test_cloud_style_host_routing_and_v1(sim, monkeypatch):
    # https://{user}.carto.com/ form: the user comes from the Host name. *.localhost stands for it here
    # (curl resolves it itself; Python is told to).
    import socket
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *a, **k: real("127.0.0.1" if host.endswith(".localhost") else host, *a, **k))
    cloud = APIKeyAuthClient(base_url=f"http://demo.localhost:{sim.port}/", api_key=DEMO_KEY)
    assert cloud.username == "demo"
    r = SQLClient(cloud).send("SELECT name FROM reader_table")
    assert r["rows"] == [{"name": "visible"}]
    assert CopySQLClient(cloud).copyto("COPY (SELECT name FROM reader_table) TO STDOUT").content == b"visible\n"
    assert SQLClient(auth(sim), api_version="v1").send("SELECT 41 + 1 AS n")["rows"] == [{"n": 42}]


def test_cdb_functions_through_the_api(sim, unique):
    sql = SQLClient(auth(sim))
    assert sql.send("SELECT current_schema()")["rows"] == [{"current_schema": "public"}]
    # A table created with the three columns up front keeps its OID ...
    cartodbfied_table(sql, unique)
    oid = sim.psql(f"SELECT '{unique}'::regclass::oid").strip()
    assert sql.send(f"SELECT CDB_CartodbfyTable('{unique}')")["rows"] == [{"cdb_cartodbfytable": unique}]
    assert sim.psql(f"SELECT '{unique}'::regclass::oid").strip() == oid
    sql.send(f"INSERT INTO {unique} (the_geom, name) VALUES (CDB_LatLng(40, -3), 'madrid')")
    assert sim.psql(f"SELECT cartodb_id, round(ST_X(the_geom_webmercator)::numeric, 2), "
                    f"round(ST_Y(the_geom_webmercator)::numeric, 2), ST_SRID(the_geom_webmercator) FROM {unique}") \
        == "1\t-333958.47\t4865942.28\t3857\n"
    names = [r["cdb_usertables"] for r in sql.send("SELECT CDB_UserTables()")["rows"]]
    assert unique in names
    # ... one without them is rewritten (new OID, cartodb_id bigint numbered 1..n).
    other = unique + "_rw"
    sql.send(f"CREATE TABLE {other} (name text CHECK (name <> ''))")
    sql.send(f"INSERT INTO {other} VALUES ('a'), ('b')")
    oid = sim.psql(f"SELECT '{other}'::regclass::oid").strip()
    sql.send(f"SELECT CDB_CartodbfyTable('{other}')")
    assert sim.psql(f"SELECT '{other}'::regclass::oid").strip() != oid
    cols = sql.send(f"SELECT c AS col, CDB_ColumnType('{other}', c) AS type FROM CDB_ColumnNames('{other}') c")
    assert cols["rows"] == [{"col": "cartodb_id", "type": "bigint"}, {"col": "the_geom", "type": "geometry"},
                            {"col": "the_geom_webmercator", "type": "geometry"}, {"col": "name", "type": "text"}]
    assert sql.send(f"SELECT cartodb_id, name FROM {other} ORDER BY 1")["rows"] == \
        [{"cartodb_id": 1, "name": "a"}, {"cartodb_id": 2, "name": "b"}]
    assert sql.send("SELECT ST_AsText(CDB_TransformToWebmercator(CDB_LatLng(0, 0))) AS w")["rows"] == \
        [{"w": "POINT(0 0)"}]


def test_user_tables_public_and_private_for_each_kind_of_key(sim, unique):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, unique)
    private = unique + "_private"
    cartodbfied_table(sql, private)
    sql.send(f"GRANT SELECT ON {unique} TO publicuser")       # what making a table public does on CARTO
    sql.send(f"INSERT INTO {unique} (name) VALUES ('for everyone')")

    def tables(client, perm):
        return {r["t"] for r in client.send(f"SELECT CDB_UserTables('{perm}') AS t")["rows"]}

    assert unique in tables(sql, "public") and private not in tables(sql, "public")
    assert private in tables(sql, "private") and unique not in tables(sql, "private")
    assert {unique, private, "reader_table"} <= tables(sql, "all")
    anonymous = SQLClient(APIKeyAuthClient(base_url=sim.base_url("demo"), api_key=None))
    assert unique in tables(anonymous, "all") and private not in tables(anonymous, "all")
    assert anonymous.send(f"SELECT name, ST_AsText(CDB_LatLng(1, 2)) AS p FROM {unique}")["rows"] == \
        [{"name": "for everyone", "p": "POINT(2 1)"}]
    with pytest.raises(CartoException) as ei:
        anonymous.send(f"SELECT * FROM {private}")
    assert type(inner(ei)).__name__ == "ForbiddenErrorException"
    reader = SQLClient(auth(sim, key=DEMO_READER_KEY))
    assert "reader_table" in tables(reader, "private") and private not in tables(reader, "all")


def test_org_member_must_name_its_schema_to_cartodbfy(sim):
    sql = SQLClient(auth(sim, user="alice", key=ALICE_KEY))
    assert sql.send("SELECT current_schema()")["rows"] == [{"current_schema": "alice"}]
    sql.send("CREATE TABLE orgt (name text)")
    with pytest.raises(CartoException) as ei:
        sql.send("SELECT CDB_CartodbfyTable('orgt')")
    assert inner(ei).args[0] == ["Please set user quota before cartodbfying tables."]
    r = sql.send("SELECT CDB_CartodbfyTable('alice', 'orgt')")
    assert r["rows"][0]["cdb_cartodbfytable"] in ("orgt", "alice.orgt")
    assert sim.psql("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
                    "WHERE attrelid = 'alice.orgt'::regclass AND attnum > 0 AND NOT attisdropped",
                    org="acme").strip() == "cartodb_id,the_geom,the_geom_webmercator,name"


# --------------------------------------------------------------------------------------------- CopySQLClient

@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_copyfrom_iterable(sim, unique, compress):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, unique)
    n = 3000
    r = CopySQLClient(auth(sim)).copyfrom(f"COPY {unique} (name, n, the_geom) FROM stdin",
                                          (copy_line(i).encode() for i in range(1, n + 1)), compress=compress)
    assert r["total_rows"] == n
    assert dump(sim, unique) == expected_dump(n)
    # the trigger filled the_geom_webmercator, the sequence numbered cartodb_id
    assert sim.psql(f"SELECT count(the_geom_webmercator), min(cartodb_id), max(cartodb_id) FROM {unique}") \
        == f"{n}\t1\t{n}\n"


def test_copyfrom_file_object_csv(sim, unique):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, unique)
    rows = [(f"name {i}, with comma", i) for i in range(1, 2001)]
    csv = "name,n\n" + "".join(f'"{a}",{b}\n' for a, b in rows)
    assert len(csv) > 3 * 8192  # several 8 KB chunks
    r = CopySQLClient(auth(sim)).copyfrom_file_object(
        f"COPY {unique} (name, n) FROM stdin WITH (FORMAT csv, HEADER true)", io.BytesIO(csv.encode()))
    assert r["total_rows"] == 2000
    assert sim.copy_out(f"COPY (SELECT name, n FROM {unique} ORDER BY n) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE (name))") \
        == csv.split("\n", 1)[1].encode()


def test_copyfrom_error_rolls_everything_back(sim, unique):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, unique)
    good = [copy_line(i).encode() for i in range(1, 5001)]
    with pytest.raises(CartoException) as ei:
        CopySQLClient(auth(sim)).copyfrom(f"COPY {unique} (name, n, the_geom) FROM stdin",
                                          iter(good + [b"bad\tx\t\\N\n"]))
    e = inner(ei)
    assert getattr(e, "status_code", None) == 400
    assert e.args[0][0].startswith('invalid input syntax for type integer: "x"')
    assert sim.psql(f"SELECT count(*) FROM {unique}").strip() == "0"


def test_copyfrom_zero_rows_is_an_error(sim, unique):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, unique)
    with pytest.raises(CartoException) as ei:
        CopySQLClient(auth(sim)).copyfrom(f"COPY {unique} (name, n) FROM stdin", iter([]))
    assert inner(ei).args[0] == ["No rows copied"]


def loaded_table(sim, name, n=1500):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, name)
    CopySQLClient(auth(sim)).copyfrom(f"COPY {name} (name, n, the_geom) FROM stdin",
                                      (copy_line(i).encode() for i in range(1, n + 1)))
    return n


def test_copyfrom_abandoned_by_the_client_leaves_nothing(sim, unique):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, unique)

    def gen():
        for i in range(1, 200001):
            yield copy_line(i).encode()
            if i == 50000:
                raise RuntimeError("the client gives up mid-upload")

    with pytest.raises(CartoException) as ei:
        CopySQLClient(auth(sim)).copyfrom(f"COPY {unique} (name, n, the_geom) FROM stdin", gen())
    assert "gives up" in str(ei.value)
    deadline = time.time() + 10
    q = f"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY {unique} %' AND state <> 'idle'"
    while time.time() < deadline and sim.psql(q).strip() != "0":
        time.sleep(0.2)
    assert sim.psql(q).strip() == "0", "the COPY is still running on the database"
    assert sim.psql(f"SELECT count(*) FROM {unique}").strip() == "0"


def test_copy_binary_round_trip_between_tables(sim, unique):
    n = loaded_table(sim, unique, 700)
    other = unique + "_copy"
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, other)
    cols = "cartodb_id, the_geom, the_geom_webmercator, name, n"
    out = io.BytesIO()
    copy = CopySQLClient(auth(sim))
    copy.copyto_file_object(f"COPY {unique} ({cols}) TO STDOUT WITH (FORMAT binary)", out)
    out.seek(0)
    r = copy.copyfrom_file_object(f"COPY {other} ({cols}) FROM STDIN WITH (FORMAT binary)", out)
    assert r["total_rows"] == n
    q = "COPY (SELECT {} FROM {} ORDER BY cartodb_id) TO STDOUT"
    assert sim.copy_out(q.format(cols, other)) == sim.copy_out(q.format(cols, unique))


def test_copyto_closed_early_stops_the_query(sim):
    q = "COPY (SELECT g, md5(g::text) FROM generate_series(1, 200000000) g) TO STDOUT"
    resp = CopySQLClient(auth(sim)).copyto(q)
    first = next(resp.iter_content(65536))
    assert first.startswith(b"1\tc4ca4238a0b923820dcc509a6f75849b\n")
    resp.close()
    probe = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT g, md5(g::text)%' AND state = 'active'"
    deadline = time.time() + 15
    while time.time() < deadline and sim.psql(probe).strip() != "0":
        time.sleep(0.2)
    assert sim.psql(probe).strip() == "0", "the COPY still runs after the client went away"


def test_regular_key_writes_into_a_cartodbfied_table(sim):
    # The CARTO triggers (webmercator, metadata, quota) run as the key's role: they must work for it.
    writer = auth(sim, key=DEMO_WRITER_KEY)
    r = CopySQLClient(writer).copyfrom("COPY writer_table (name, n, the_geom) FROM stdin",
                                       (copy_line(i).encode() for i in range(1, 201)))
    assert r["total_rows"] == 200
    SQLClient(writer).send("UPDATE writer_table SET the_geom = CDB_LatLng(0, 0) WHERE n = 1")
    assert dump(sim, "writer_table").count(b"\n") == 200
    assert sim.psql("SELECT count(the_geom_webmercator), "
                    "sum((ST_AsText(the_geom_webmercator) = 'POINT(0 0)')::int) FROM writer_table") == "200\t1\n"
    assert sim.psql("SELECT count(*) FROM cartodb.cdb_tablemetadata WHERE tabname = 'writer_table'::regclass") \
        .strip() == "1"
    with pytest.raises(CartoException) as ei:
        SQLClient(writer).send("DELETE FROM writer_table")
    assert type(inner(ei)).__name__ == "ForbiddenErrorException"


def test_copyfrom_over_the_size_limit_is_refused_and_rolled_back(sim, unique):
    sql = SQLClient(auth(sim))
    cartodbfied_table(sql, unique)
    default = sim.admin("GET", "/_sim/limits")["copyfrom_max_bytes"]
    sim.set_limits(copyfrom_max_bytes=100 * 1024)
    try:
        for compress in (True, False):
            with pytest.raises(CartoException) as ei:
                CopySQLClient(auth(sim)).copyfrom(f"COPY {unique} (name, n, the_geom) FROM stdin",
                                                  (copy_line(i).encode() for i in range(1, 100001)), compress=compress)
            e = inner(ei)
            assert getattr(e, "status_code", None) == 400
            assert e.args[0] == ["COPY FROM maximum POST size of 100 KB exceeded"]
            assert sim.psql(f"SELECT count(*) FROM {unique}").strip() == "0"
    finally:
        sim.set_limits(copyfrom_max_bytes=default)


def test_copyto_gzipped_by_the_proxy_is_transparent(sim, unique):
    # On CARTO's cloud nginx gzips /copyto when the client accepts it (requests does): same bytes after decoding.
    loaded_table(sim, unique, 2000)
    q = f"COPY (SELECT * FROM {unique} ORDER BY cartodb_id) TO STDOUT"
    sim.set_limits(copyto_gzip=True)
    try:
        resp = CopySQLClient(auth(sim)).copyto(q)
        assert resp.headers.get("Content-Encoding") == "gzip"
        assert resp.content == sim.copy_out(q)
    finally:
        sim.set_limits(copyto_gzip=False)


def test_html_502_from_a_proxy(sim):
    sim.add_fault(group="query", user="demo", html_502=True, count=1)
    try:
        with pytest.raises(CartoException) as ei:
            SQLClient(auth(sim)).send("SELECT 1")
        e = inner(ei)
        assert getattr(e, "status_code", None) == 502
        assert "<html" in str(e.args[0]).lower()
        assert SQLClient(auth(sim)).send("SELECT 1 AS ok")["rows"] == [{"ok": 1}]   # only the next request
    finally:
        sim.clear_faults()


def test_copyto_get(sim, unique):
    loaded_table(sim, unique)
    q = f"COPY (SELECT * FROM {unique} ORDER BY cartodb_id) TO STDOUT"
    resp = CopySQLClient(auth(sim)).copyto(q)
    assert resp.request.method == "GET"
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/octet-stream")
    assert "carto-sql-copyto.dmp" in resp.headers.get("Content-Disposition", "")
    assert resp.content == sim.copy_out(q)


def test_copyto_post_above_1024_characters(sim, unique):
    loaded_table(sim, unique)
    pad = "x" * 1100
    q = f"COPY (SELECT cartodb_id, name, n, the_geom FROM {unique} WHERE name <> '{pad}' ORDER BY n) TO STDOUT WITH (FORMAT csv)"
    assert len(q) >= 1024
    resp = CopySQLClient(auth(sim)).copyto(q)
    assert resp.request.method == "POST"
    assert resp.content == sim.copy_out(q)
    assert resp.content.count(b"\n") == 1500


def test_copyto_file_object_text_and_binary(sim, unique):
    n = loaded_table(sim, unique)
    for q in (f"COPY {unique} (n, name, the_geom_webmercator) TO STDOUT",
              f"COPY (SELECT * FROM {unique} ORDER BY n) TO STDOUT WITH (FORMAT binary)"):
        out = io.BytesIO()
        CopySQLClient(auth(sim)).copyto_file_object(q, out)
        assert out.getvalue() == sim.copy_out(q)
    assert out.getvalue().startswith(b"PGCOPY\n\xff\r\n\0")
    assert sim.psql(f"SELECT count(*) FROM {unique}").strip() == str(n)


def test_copyto_error_after_the_stream_started_is_appended(sim):
    # CARTO has sent 200 and data already: the error JSON is appended to the body, the data before it is a
    # prefix of the result (cut at a row boundary). carto-python hands the whole body over as is.
    q = "COPY (SELECT CASE WHEN g < 100000 THEN g ELSE 1 / (g - g) END FROM generate_series(1, 200000) g) TO STDOUT"
    resp = CopySQLClient(auth(sim)).copyto(q)
    assert resp.status_code == 200
    body = resp.content
    head, sep, tail = body.rpartition(b'{"error":')
    assert sep, body[-300:]
    assert json.loads(sep + tail)["error"] == ["division by zero"]
    full = "".join(f"{g}\n" for g in range(1, 100000)).encode()
    assert full.startswith(head) and (head == b"" or head.endswith(b"\n"))
    assert len(head) > 0


def test_copyto_error(sim):
    with pytest.raises(CartoException) as ei:
        CopySQLClient(auth(sim)).copyto("COPY no_such_table TO STDOUT")
    assert str(ei.value) == '400 Client Error: relation "no_such_table" does not exist'
    with pytest.raises(CartoException) as ei:
        CopySQLClient(auth(sim)).copyto("SELECT 1")
    assert str(ei.value) == "400 Client Error: SQL must start with COPY"
    # an error before any data was flushed still comes as a 4xx JSON
    with pytest.raises(CartoException) as ei:
        CopySQLClient(auth(sim)).copyto("COPY (SELECT 1 / 0) TO STDOUT")
    assert str(ei.value) == "400 Client Error: division by zero"


# --------------------------------------------------------------------------------------------- BatchSQLClient

JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def wait_status(batch, job_id, statuses, timeout=30):
    deadline = time.time() + timeout
    while True:
        job = batch.read(job_id)
        if job["status"] in statuses or time.time() > deadline:
            return job
        time.sleep(0.2)


def test_batch_create_read_and_wait_done(sim, unique):
    batch = BatchSQLClient(auth(sim))
    job = batch.create([f"CREATE TABLE {unique} (x int)", f"INSERT INTO {unique} SELECT generate_series(1, 10)"])
    assert JOB_ID.match(job["job_id"])
    assert job["user"] == "demo"
    assert job["status"] in ("pending", "running", "done")
    assert [q["query"] for q in job["query"]] == [f"CREATE TABLE {unique} (x int)",
                                                  f"INSERT INTO {unique} SELECT generate_series(1, 10)"]
    done = wait_status(batch, job["job_id"], ("done", "failed"))
    assert done["status"] == "done", done
    assert [q["status"] for q in done["query"]] == ["done", "done"]
    assert sim.psql(f"SELECT count(*), sum(x) FROM {unique}") == "10\t55\n"

    job = batch.create_and_wait_for_completion(f"UPDATE {unique} SET x = x * 2")
    assert job["status"] == "done"
    assert sim.psql(f"SELECT sum(x) FROM {unique}").strip() == "110"


def test_batch_wait_failed(sim):
    batch = BatchSQLClient(auth(sim))
    with pytest.raises(CartoException) as ei:
        batch.create_and_wait_for_completion("SELECT * FROM no_such_table")
    msg = str(ei.value)
    assert msg.startswith("Batch SQL job failed with result:")
    assert "'status': 'failed'" in msg
    job_id = re.search(r"'job_id': '([0-9a-f-]{36})'", msg).group(1)
    job = batch.read(job_id)
    assert job["status"] == "failed"
    assert job["failed_reason"] == 'relation "no_such_table" does not exist'


def test_batch_cancel_running_and_done(sim):
    batch = BatchSQLClient(auth(sim))
    job = batch.create("SELECT pg_sleep(30)")
    running = wait_status(batch, job["job_id"], ("running",), timeout=15)
    assert running["status"] == "running"
    assert batch.cancel(job["job_id"]) == "cancelled"
    assert batch.read(job["job_id"])["status"] == "cancelled"
    # the query really stopped on the database
    deadline = time.time() + 10
    while time.time() < deadline and sim.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'").strip() != "0":
        time.sleep(0.2)
    assert sim.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'").strip() == "0"

    done = batch.create_and_wait_for_completion("SELECT 1")
    # carto-python turns CARTO's "Cannot set status from done to cancelled" into 'done'
    assert batch.cancel(done["job_id"]) == "done"


def test_batch_jobs_of_a_user_run_one_at_a_time_and_skip_after_a_failure(sim):
    batch = BatchSQLClient(auth(sim))
    slow = batch.create("SELECT pg_sleep(2)")
    multi = batch.create(["SELECT 1", "SELECT * FROM no_such_table", "SELECT 2"])
    assert wait_status(batch, slow["job_id"], ("running",), timeout=15)["status"] == "running"
    assert batch.read(multi["job_id"])["status"] == "pending"     # queued behind the running job
    done = wait_status(batch, multi["job_id"], ("done", "failed"), timeout=30)
    assert batch.read(slow["job_id"])["status"] == "done"
    assert done["status"] == "failed"
    assert [q["status"] for q in done["query"]] == ["done", "failed", "skipped"]
    assert done["failed_reason"] == 'relation "no_such_table" does not exist'


def test_batch_fallback_queries_and_templates(sim, unique):
    batch = BatchSQLClient(auth(sim))
    job = batch.create({"query": [{"query": "SELECT * FROM no_such_table",
                                   "onerror": f"CREATE TABLE {unique} AS SELECT '<%= error_message %>'::text AS m, "
                                              f"'<%= job_id %>'::text AS j"}]})
    done = wait_status(batch, job["job_id"], ("done", "failed"))
    assert done["status"] == "failed"
    q = done["query"]["query"][0]
    assert q["status"] == "failed" and q["failed_reason"] == 'relation "no_such_table" does not exist'
    assert sim.psql(f"SELECT m, j FROM {unique}") == f'relation "no_such_table" does not exist\t{job["job_id"]}\n'


def test_batch_payload_limit(sim):
    with pytest.raises(CartoException) as ei:
        BatchSQLClient(auth(sim)).create("SELECT '" + "x" * 17000 + "'")
    e = inner(ei)
    assert getattr(e, "status_code", None) == 400
    assert e.args[0][0].startswith("Your payload is too large: ")
    assert "Max size allowed is 16384 bytes (16kb)." in e.args[0][0]


def test_batch_finished_jobs_are_forgotten_after_their_ttl(sim):
    batch = BatchSQLClient(auth(sim))
    default = sim.admin("GET", "/_sim/limits")["batch_ttl_secs"]
    sim.set_limits(batch_ttl_secs=2.0)
    try:
        job = batch.create("SELECT 1")
        assert wait_status(batch, job["job_id"], ("done",), timeout=10)["status"] == "done"
        time.sleep(3)
        with pytest.raises(CartoException) as ei:
            batch.read(job["job_id"])
        assert type(inner(ei)).__name__ == "NotFoundException"
    finally:
        sim.set_limits(batch_ttl_secs=default)


def test_batch_unknown_job_and_non_master_key(sim):
    batch = BatchSQLClient(auth(sim))
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(CartoException) as ei:
        batch.read(missing)
    e = inner(ei)
    assert getattr(e, "status_code", None) == 400
    assert e.args[0] == [f"Job with id {missing} not found"]
    with pytest.raises(CartoException) as ei:
        BatchSQLClient(auth(sim, key=DEMO_READER_KEY)).create("SELECT 1")
    assert type(inner(ei)).__name__ == "ForbiddenErrorException"


# --------------------------------------------------------------------------------------------- rate limits

def test_rate_limited_copies_raise_carto_rate_limit_exception(sim):
    sql = SQLClient(auth(sim, user="freebie", key=FREE_KEY))
    sql.send("CREATE TABLE limited (name text, n int)")
    copy = CopySQLClient(auth(sim, user="freebie", key=FREE_KEY))
    assert copy.copyfrom("COPY limited (name, n) FROM stdin", iter([b"a\t1\n"]))["total_rows"] == 1
    with pytest.raises(CartoRateLimitException) as ei:
        copy.copyfrom("COPY limited (name, n) FROM stdin", iter([b"b\t2\n"]))
    e = ei.value
    assert isinstance(e.limit, int) and e.limit >= 1
    assert e.remaining == 0
    assert 0 < e.retry_after <= 60
    assert 0 < e.reset <= 60
    assert "You are over platform's limits" in str(e)
    assert sim.psql("SELECT string_agg(name, ',') FROM limited", user="freebie").strip() == "a"

    # copyto is limited separately (its own endpoint group)
    assert copy.copyto("COPY limited TO STDOUT").content == b"a\t1\n"
    with pytest.raises(CartoRateLimitException) as ei:
        copy.copyto("COPY limited TO STDOUT")
    assert ei.value.remaining == 0 and ei.value.retry_after > 0


def test_batch_rate_limit_and_retry_after_is_truthful(sim):
    batch = BatchSQLClient(auth(sim, user="freebie", key=FREE_KEY))
    first = batch.create("SELECT 1")
    with pytest.raises(CartoRateLimitException) as ei:
        batch.create("SELECT 2")
    e = ei.value
    assert e.remaining == 0 and e.retry_after >= 1 and e.limit >= 1
    time.sleep(e.retry_after + 0.2)
    second = batch.create("SELECT 3")          # waiting Retry-After seconds is enough
    assert second["job_id"] != first["job_id"]


def test_injected_429_kinds_as_carto_python_sees_them(sim):
    # A fault with retry_after is CARTO's rate-limit refusal (CartoRateLimitException with its numbers);
    # without it, the statement-timeout kind (a plain CartoException).
    sim.add_fault(group="query", user="demo", status=429, retry_after=9, count=1)
    try:
        with pytest.raises(CartoRateLimitException) as ei:
            SQLClient(auth(sim)).send("SELECT 1")
        e = ei.value
        assert (e.retry_after, e.remaining, e.reset) == (9, 0, 9) and e.limit >= 1
        assert "You are over platform's limits. Please contact us to know more details" in str(e)
        sim.add_fault(group="query", user="demo", status=429, count=1)
        with pytest.raises(CartoException) as ei:
            SQLClient(auth(sim)).send("SELECT 1")
        assert not isinstance(ei.value, CartoRateLimitException)
        assert inner(ei).args[0] == ["You are over platform's limits: SQL query timeout error. Refactor your query "
                                     "before running again or contact CARTO support for more details."]
    finally:
        sim.clear_faults()


def test_statement_timeout_is_a_429_without_retry_after(sim):
    # free plan: 5 s statement timeout on /sql; CARTO answers 429 with no Retry-After, which carto-python
    # does NOT take for a rate limit.
    sql = SQLClient(auth(sim, user="freebie", key=FREE_KEY))
    t = time.time()
    with pytest.raises(CartoException) as ei:
        sql.send("SELECT pg_sleep(8)")
    assert not isinstance(ei.value, CartoRateLimitException)
    e = inner(ei)
    assert getattr(e, "status_code", None) == 429
    assert "Retry-After" not in e.headers
    assert e.args[0] == ["You are over platform's limits: SQL query timeout error. Refactor your query before "
                         "running again or contact CARTO support for more details."]
    assert time.time() - t < 7.9   # cut by the 5 s timeout, not by pg_sleep(8) ending
