-- Data of 13_joins: run as is on CARTO (through /sql) and locally (schema loc).
DROP TABLE IF EXISTS t13_big;
CREATE TABLE t13_big (cartodb_id int PRIMARY KEY, the_geom geometry(Point, 4326), k int, name text);
INSERT INTO t13_big
SELECT g, ST_SetSRID(ST_MakePoint(g % 360 - 180, g % 170 - 85), 4326), g % 1000, 'row ' || g
  FROM generate_series(1, 100000) g;
ANALYZE t13_big;
