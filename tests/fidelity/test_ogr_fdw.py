"""ogr_fdw (Debian's postgresql-15-ogr-fdw: PostgreSQL -> GDAL's Carto driver) against carto-sim: the peer
that carto_fdw is benchmarked against must work on the same sim."""
import os
import shutil

import pytest
from carto.auth import APIKeyAuthClient
from carto.sql import SQLClient

from conftest import DEMO_KEY

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/share/postgresql/15/extension/ogr_fdw.control"),
                                reason="postgresql-15-ogr-fdw is not installed")


def test_ogr_fdw_reads_and_writes_a_carto_table(sim):
    api = SQLClient(APIKeyAuthClient(base_url=sim.base_url("demo"), api_key=DEMO_KEY))
    api.send("CREATE TABLE ogrfdw_t (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326), "
             "the_geom_webmercator geometry(Point,3857), label text, k integer)")
    api.send("SELECT CDB_CartodbfyTable('ogrfdw_t')")
    api.send("INSERT INTO ogrfdw_t (the_geom, label, k) SELECT CDB_LatLng(g * 0.1, g * 0.2), 'r' || g, g "
             "FROM generate_series(1, 640) g")

    local = "fidelity_ogrfdw"
    sim.psql_db("postgres", f"DROP DATABASE IF EXISTS {local}")
    sim.psql_db("postgres", f"CREATE DATABASE {local}")
    sim.psql_db(local, "CREATE EXTENSION postgis; CREATE EXTENSION ogr_fdw; CREATE SCHEMA c;")
    sim.psql_db(local, f"""
        CREATE SERVER carto FOREIGN DATA WRAPPER ogr_fdw OPTIONS (datasource 'Carto:demo', format 'Carto',
          config_options 'CARTO_API_URL={sim.sql_url("demo")} CARTO_API_KEY={DEMO_KEY} CARTO_PAGE_SIZE=100');
        IMPORT FOREIGN SCHEMA ogr_all LIMIT TO (ogrfdw_t) FROM SERVER carto INTO c;""")
    cols = sim.psql_db(local, "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) "
                              "FROM pg_attribute WHERE attrelid = 'c.ogrfdw_t'::regclass AND attnum > 0").strip()
    assert cols == "fid:bigint,the_geom:geometry(Point,4326),label:character varying,k:integer"
    # every row, through GDAL's keyset paging
    assert sim.psql_db(local, "SELECT count(*), sum(fid), sum(k), count(DISTINCT label) FROM c.ogrfdw_t") \
        == f"640|{sum(range(1, 641))}|{sum(range(1, 641))}|640\n"
    assert sim.psql_db(local, "SELECT label, ST_AsText(the_geom) FROM c.ogrfdw_t WHERE fid = 7") == "r7|POINT(1.4 0.7)\n"
    # writes: INSERT, UPDATE, DELETE go back to CARTO through the driver
    sim.psql_db(local, "INSERT INTO c.ogrfdw_t (label, k, the_geom) VALUES ('from ogr_fdw', 1000, 'SRID=4326;POINT(5 6)')")
    sim.psql_db(local, "UPDATE c.ogrfdw_t SET label = 'updated' WHERE fid = 3")
    sim.psql_db(local, "DELETE FROM c.ogrfdw_t WHERE fid = 4")
    assert sim.psql("SELECT cartodb_id, label, k, ST_AsText(the_geom), ST_AsText(ST_SnapToGrid(the_geom_webmercator, 1)) "
                    "FROM ogrfdw_t WHERE cartodb_id IN (3, 4) OR k = 1000 ORDER BY 1") \
        == "3\tupdated\t3\tPOINT(0.6 0.3)\tPOINT(66792 33396)\n641\tfrom ogr_fdw\t1000\tPOINT(5 6)\tPOINT(556597 669141)\n"
