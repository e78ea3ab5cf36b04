"""GDAL's Carto driver (ogr2ogr / ogrinfo from Debian's gdal-bin) against carto-sim."""
import json
import os
import re
import subprocess
import warnings

import pytest
from carto.auth import APIKeyAuthClient
from carto.sql import SQLClient

from conftest import DEMO_KEY

warnings.filterwarnings("ignore", message=".*unencrypted API key.*")


def gdal_config(sim, page_size=None):
    cfg = ["--config", "CARTO_API_URL", sim.sql_url("demo"), "--config", "CARTO_API_KEY", DEMO_KEY,
           "--config", "CPL_CURL_VERBOSE", "NO"]
    if page_size:
        cfg += ["--config", "CARTO_PAGE_SIZE", str(page_size)]
    return cfg


def run(cmd, timeout=300):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p


def sql(sim):
    return SQLClient(APIKeyAuthClient(base_url=sim.base_url("demo"), api_key=DEMO_KEY))


def point(i):
    return round(-170 + (i * 0.731) % 340, 4), round(-80 + (i * 0.377) % 160, 4)


def test_ogr2ogr_upload_in_copy_mode(sim, tmp_path):
    n = 347
    feats = []
    for i in range(1, n + 1):
        x, y = point(i)
        feats.append({"type": "Feature",
                      "properties": {"name": f"feature {i} ñ'\"\t\\", "value": i * 3, "score": i / 8},
                      "geometry": {"type": "Point", "coordinates": [x, y]}})
    src = tmp_path / "points.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")

    sim.clear_log()
    p = run(["ogr2ogr", "--debug", "on", "-f", "Carto", "Carto:demo", str(src), "-nln", "gdal_points"]
            + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-4000:]
    assert "RunCopyFrom" in p.stderr, "GDAL did not use COPY mode"
    copies = [e for e in sim.requests_log() if e.get("path", "").endswith("/copyfrom")]
    assert copies and all(e["status"] == 200 for e in copies), copies

    rows = sim.psql("SELECT value, score, ST_X(the_geom), ST_Y(the_geom), ST_SRID(the_geom), "
                    "the_geom_webmercator IS NOT NULL FROM gdal_points ORDER BY value").splitlines()
    assert len(rows) == n
    for i, line in enumerate(rows, start=1):
        value, score, x, y, srid, merc = line.split("\t")
        assert int(value) == i * 3
        assert float(score) == i / 8
        assert (float(x), float(y)) == point(i)
        assert srid == "4326" and merc == "t"
    assert sim.psql("SELECT min(cartodb_id), max(cartodb_id), count(DISTINCT cartodb_id) FROM gdal_points") \
        == f"1\t{n}\t{n}\n"
    # exact text of every name, without psql's formatting in the way
    names = sim.copy_out("COPY (SELECT name FROM gdal_points ORDER BY value) TO STDOUT").decode()
    assert names == "".join(f"feature {i} ñ'\"\\t\\\\\n" for i in range(1, n + 1))
    # cartodbfied by GDAL's cdb_cartodbfytable() call
    cols = sim.psql("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
                    "WHERE attrelid = 'gdal_points'::regclass AND attnum > 0 AND NOT attisdropped").strip()
    assert cols.split(",")[:3] == ["cartodb_id", "the_geom", "the_geom_webmercator"], cols
    assert sim.psql("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'gdal_points'::regclass "
                    "AND tgname = 'update_the_geom_webmercator_trigger'").strip() == "1"


def make_paged_table(sim, name, n):
    s = sql(sim)
    s.send(f"CREATE TABLE {name} (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326), "
           f"the_geom_webmercator geometry(Point,3857), label text, k integer)")
    s.send(f"SELECT CDB_CartodbfyTable('{name}')")
    s.send(f"INSERT INTO {name} (the_geom, label, k) "
           f"SELECT CDB_LatLng(g * 0.25 - 60, g * 0.5 - 150), 'row ' || g, g * g FROM generate_series(1, {n}) g")


def parse_ogrinfo(text, layer):
    feats = {}
    cur = None
    for line in text.splitlines():
        m = re.match(rf"OGRFeature\({re.escape(layer)}\):(\d+)$", line)
        if m:
            cur = int(m.group(1))
            feats[cur] = {}
            continue
        if cur is None:
            continue
        m = re.match(r"\s+(\w+) \((\w+)\) = (.*)$", line)
        if m:
            feats[cur][m.group(1)] = m.group(3)
            continue
        m = re.match(r"\s+POINT \(([-\d.e]+) ([-\d.e]+)\)$", line)
        if m:
            feats[cur]["geom"] = (float(m.group(1)), float(m.group(2)))
    return feats


def test_ogrinfo_reads_every_feature_with_paging(sim):
    n = 317
    make_paged_table(sim, "gdal_paged", n)
    sim.clear_log()
    p = run(["ogrinfo", "--debug", "on", "-ro", "-al", "Carto:demo tables=gdal_paged"] + gdal_config(sim, page_size=50))
    assert p.returncode == 0, p.stderr[-4000:]
    # keyset paging on cartodb_id, 50 rows a page: 0, 51, 101, ... 301 (the 7th page is short: done)
    pages = re.findall(r'FROM "gdal_paged" WHERE "cartodb_id" >= (\d+) ORDER BY "cartodb_id" ASC LIMIT 50', p.stderr)
    assert [int(x) for x in pages] == [0, 51, 101, 151, 201, 251, 301], pages
    feats = parse_ogrinfo(p.stdout, "gdal_paged")
    assert sorted(feats) == list(range(1, n + 1))
    for g, f in feats.items():
        assert f["label"] == f"row {g}"
        assert int(f["k"]) == g * g
        assert f["geom"] == (g * 0.5 - 150, g * 0.25 - 60)
    assert re.search(r"Feature Count: 317", p.stdout)
    queries = [e for e in sim.requests_log() if e.get("group") == "query"]
    # 317 rows in pages of 50 = 7 pages at least, each a /sql request
    assert len(queries) >= 7, queries
    assert all(e["status"] == 200 for e in queries)


def test_ogrinfo_lists_layers_with_cdb_usertables(sim):
    make_paged_table(sim, "gdal_listed", 3)
    p = run(["ogrinfo", "-ro", "Carto:demo"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-4000:]
    assert re.search(r"^\d+: gdal_listed \(Point\)$", p.stdout, re.M), p.stdout
    # only tables the key can read, as CDB_UserTables() says
    assert sim.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'gdal_listed'").strip() == "1"


def test_ogrinfo_spatial_filter_runs_remotely(sim):
    make_paged_table(sim, "gdal_spat", 200)
    # points are (g*0.5-150, g*0.25-60): x in [-100, -90] is g in [100, 120]
    p = run(["ogrinfo", "--debug", "on", "-ro", "-al", "-spat", "-100", "-90", "-90", "0",
             "Carto:demo tables=gdal_spat"] + gdal_config(sim, page_size=500))
    assert p.returncode == 0, p.stderr[-4000:]
    feats = parse_ogrinfo(p.stdout, "gdal_spat")
    assert sorted(int(f["k"]) for f in feats.values()) == [g * g for g in range(100, 121)]
    # the filter went to CARTO as a PostGIS && on the_geom (GDAL escapes & as %26 in its form body)
    assert re.search(r'WHERE \("the_geom" %26%26 \'BOX3D\(-100 -90, -90 0\)\'::box3d\)', p.stderr), p.stderr[-3000:]


def test_ogr2ogr_from_postgresql_with_many_types(sim):
    src = "fidelity_src"
    sim.psql_db("postgres", f"DROP DATABASE IF EXISTS {src}")
    sim.psql_db("postgres", f"CREATE DATABASE {src}")
    sim.psql_db(src, "CREATE EXTENSION postgis")
    sim.psql_db(src, """
        CREATE TABLE parcels (id serial PRIMARY KEY, name text, area float8, n_owners int, active boolean,
                              registered date, updated timestamp, geom geometry(MultiPolygon,4326));
        INSERT INTO parcels (name, area, n_owners, active, registered, updated, geom)
        SELECT 'parcel ' || g || CASE WHEN g % 3 = 0 THEN ' ñ' ELSE '' END, g * 1.5, g % 4,
               g % 2 = 0, date '2020-01-01' + g, timestamp '2021-06-01 12:00:00' + g * interval '1 hour',
               ST_Multi(ST_MakeEnvelope(g * 0.1, g * 0.05, g * 0.1 + 0.05, g * 0.05 + 0.02, 4326))
          FROM generate_series(1, 120) g;""")
    # GDAL 3.6's Carto driver creates the geometry column as the_geom but then COPYs into the source's
    # geometry name ("geom"): a GDAL limitation (the same against CARTO), avoided by naming it the_geom.
    p = run(["ogr2ogr", "--debug", "on", "-f", "Carto", "Carto:demo", f"PG:{sim.pg_conninfo(src)}",
             "-sql", "SELECT name, area, n_owners, active, registered, updated, geom AS the_geom FROM parcels ORDER BY id",
             "-nlt", "MULTIPOLYGON", "-nln", "from_pg"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-4000:]
    src_rows = subprocess.run(
        ["psql", "-X", "-q", "-c", "COPY (SELECT name, area, n_owners, active, registered, updated, ST_AsText(geom) "
         "FROM parcels ORDER BY id) TO STDOUT", sim.pg_conninfo(src)], capture_output=True, check=True).stdout
    # (GDAL maps timestamp to timestamptz on the CARTO side: compare the wall-clock value)
    got = sim.copy_out("COPY (SELECT name, area, n_owners, active, registered, updated::timestamp, ST_AsText(the_geom) "
                       "FROM from_pg ORDER BY registered) TO STDOUT")
    assert got == src_rows
    # Here GDAL does not cartodbfy ("geometry type isn't defined" when the layer is created): do it through
    # the SQL API, as a user would; the table is rewritten (no the_geom_webmercator yet) and keeps its data.
    assert "Cannot register table in dashboard" in p.stderr
    oid = sim.psql("SELECT 'from_pg'::regclass::oid")
    assert sql(sim).send("SELECT CDB_CartodbfyTable('from_pg')")["rows"] == [{"cdb_cartodbfytable": "from_pg"}]
    assert sim.psql("SELECT 'from_pg'::regclass::oid") != oid
    assert sim.copy_out("COPY (SELECT name, area, n_owners, active, registered, updated::timestamp, ST_AsText(the_geom) "
                        "FROM from_pg ORDER BY registered) TO STDOUT") == src_rows
    assert sim.psql("SELECT count(*), count(the_geom_webmercator), min(cartodb_id), max(cartodb_id) FROM from_pg") \
        == "120\t120\t1\t120\n"


def test_gdal_organisation_member_uses_its_schema(sim, tmp_path):
    from conftest import ALICE_KEY
    src = tmp_path / "org.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": f"o{i}"}, "geometry": {"type": "Point", "coordinates": [i, i]}}
        for i in range(1, 11)]}))
    cfg = ["--config", "CARTO_API_URL", sim.sql_url("alice"), "--config", "CARTO_API_KEY", ALICE_KEY]
    p = run(["ogr2ogr", "--debug", "on", "-f", "Carto", "Carto:alice", str(src), "-nln", "org_points"] + cfg)
    assert p.returncode == 0, p.stderr[-4000:]
    # GDAL saw current_schema() = alice and called the two-argument form
    assert "cdb_cartodbfytable('alice', 'org_points')" in p.stderr
    assert "Error returned by server" not in p.stderr, p.stderr[-3000:]
    assert sim.psql("SELECT count(*), count(the_geom_webmercator), string_agg(name, ',' ORDER BY name) "
                    "FROM alice.org_points", org="acme") == "10\t10\to1,o10,o2,o3,o4,o5,o6,o7,o8,o9\n"
    p = run(["ogrinfo", "-ro", "-al", "-q", "Carto:alice tables=org_points"] + cfg)
    assert p.returncode == 0 and len(parse_ogrinfo(p.stdout, "org_points")) == 10, p.stdout[-2000:] + p.stderr[-2000:]


def test_ogr2ogr_append_without_copy_mode(sim, tmp_path):
    """GDAL's other write paths: batched "BEGIN;INSERT ...;COMMIT;" and single INSERT ... RETURNING cartodb_id."""
    src = tmp_path / "few.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": f"f{i}", "v": i}, "geometry": {"type": "Point", "coordinates": [i, -i]}}
        for i in range(1, 31)]}))
    p = run(["ogr2ogr", "-f", "Carto", "Carto:demo", str(src), "-nln", "gdal_append"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-3000:]
    p = run(["ogr2ogr", "--debug", "on", "-update", "-append", "-f", "Carto", "Carto:demo", str(src),
             "-nln", "gdal_append", "-doo", "COPY_MODE=NO"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "BEGIN;INSERT INTO" in p.stderr and "RunCopyFrom" not in p.stderr
    p = run(["ogr2ogr", "--debug", "on", "-update", "-append", "-f", "Carto", "Carto:demo", str(src),
             "-nln", "gdal_append", "-doo", "COPY_MODE=NO", "-doo", "BATCH_INSERT=NO"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-3000:]
    assert 'RETURNING "cartodb_id"' in p.stderr
    assert sim.psql("SELECT count(*), count(DISTINCT cartodb_id), count(the_geom_webmercator), sum(v) FROM gdal_append") \
        == f"90\t90\t90\t{3 * sum(range(1, 31))}\n"
    assert sim.psql("SELECT count(*) FROM gdal_append WHERE ST_X(the_geom) = v AND ST_Y(the_geom) = -v").strip() == "90"


def test_ogrinfo_sql_result_layer_pages_with_offset(sim):
    make_paged_table(sim, "gdal_sqlpaged", 260)
    p = run(["ogrinfo", "--debug", "on", "-ro", "-al", "-sql",
             "SELECT cartodb_id, label, k, the_geom FROM gdal_sqlpaged WHERE k > 100 ORDER BY cartodb_id",
             "Carto:demo"] + gdal_config(sim, page_size=50))
    assert p.returncode == 0, p.stderr[-3000:]
    offsets = re.findall(r"WHERE k > 100 ORDER BY cartodb_id LIMIT 50 OFFSET (\d+)", p.stderr)
    # (GDAL reads the first page once more to learn the layer's fields)
    assert {0, 50, 100, 150, 200} <= {int(o) for o in offsets} <= {0, 50, 100, 150, 200, 250}, offsets
    feats = [line for line in p.stdout.splitlines() if line.startswith("OGRFeature(")]
    assert len(feats) == 250   # k = g*g > 100 for g = 11..260
    labels = re.findall(r"^\s+label \(String\) = (.*)$", p.stdout, re.M)
    assert labels == [f"row {g}" for g in range(11, 261)]
    points = re.findall(r"POINT \(([-\d.]+) ([-\d.]+)\)", p.stdout)
    assert [(float(x), float(y)) for x, y in points] == [(g * 0.5 - 150, g * 0.25 - 60) for g in range(11, 261)]


def test_ogr2ogr_splits_big_uploads_into_several_copies(sim, tmp_path):
    n = 20000
    src = tmp_path / "many.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": f"feature number {i} " + "x" * 40, "v": i},
         "geometry": {"type": "Point", "coordinates": point(i)}} for i in range(1, n + 1)]}))
    sim.clear_log()
    p = run(["ogr2ogr", "-f", "Carto", "Carto:demo", str(src), "-nln", "gdal_chunks",
             "--config", "CARTO_MAX_CHUNK_SIZE", "1"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-3000:]
    copies = [e for e in sim.requests_log() if e.get("path", "").endswith("/copyfrom")]
    assert len(copies) >= 2 and all(e["status"] == 200 for e in copies), copies
    assert sim.psql("SELECT count(*), count(DISTINCT v), min(v), max(v), count(the_geom_webmercator) FROM gdal_chunks") \
        == f"{n}\t{n}\t1\t{n}\t{n}\n"


def test_gdal_reports_an_html_502(sim):
    make_paged_table(sim, "gdal_502", 5)
    sim.add_fault(group="query", user="demo", html_502=True, count=50)
    try:
        p = run(["ogrinfo", "-ro", "-al", "Carto:demo tables=gdal_502"] + gdal_config(sim))
    finally:
        sim.clear_faults()
    assert "HTML error page returned by server" in p.stderr, p.stderr[-2000:]
    assert "OGRFeature(gdal_502)" not in p.stdout


def test_gdal_sees_an_error_inside_a_200_body(sim):
    p = run(["ogrinfo", "-ro", "-al", "-sql",
             "SELECT CASE WHEN g < 3 THEN g ELSE 1 / (g - g) END AS v FROM generate_series(1, 5) g",
             "Carto:demo"] + gdal_config(sim))
    assert "Error returned by server : division by zero" in p.stderr, p.stderr[-2000:]
    assert "OGRFeature(" not in p.stdout


def test_ogr2ogr_overwrite_replaces_the_table(sim, tmp_path):
    def geojson(n, tag):
        f = tmp_path / f"{tag}.geojson"
        f.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"name": f"{tag}{i}"}, "geometry": {"type": "Point", "coordinates": [i, i]}}
            for i in range(1, n + 1)]}))
        return str(f)

    p = run(["ogr2ogr", "-f", "Carto", "Carto:demo", geojson(8, "old"), "-nln", "gdal_overwrite"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-3000:]
    p = run(["ogr2ogr", "--debug", "on", "-overwrite", "-f", "Carto", "Carto:demo", geojson(3, "new"),
             "-nln", "gdal_overwrite"] + gdal_config(sim))
    assert p.returncode == 0, p.stderr[-3000:]
    assert 'DROP TABLE IF EXISTS "gdal_overwrite"' in p.stderr
    assert sim.psql("SELECT string_agg(cartodb_id || ':' || name, ',' ORDER BY cartodb_id), count(the_geom_webmercator) "
                    "FROM gdal_overwrite") == "1:new1,2:new2,3:new3\t3\n"
