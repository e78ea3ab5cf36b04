-- Data of 17_pushdown_agg_join: run as is on CARTO (through /sql) and locally (schema loc).
DROP TABLE IF EXISTS p17_pts, p17_reg, p17_own, p17_empty;
-- 300 points: NULL-heavy groups (grp NULL for a third), NULL geometries, quarter floats (exact sums).
CREATE TABLE p17_pts (cartodb_id int PRIMARY KEY, the_geom geometry(Point, 4326), cat text, grp int, v int,
  n numeric, f float8, flag bool, arr int[], reg_id int);
INSERT INTO p17_pts
SELECT g,
       CASE WHEN g % 29 = 0 THEN NULL ELSE ST_SetSRID(ST_MakePoint((g * 7) % 100, (g * 13) % 100), 4326) END,
       CASE WHEN g % 9 = 0 THEN NULL ELSE (ARRAY['alpha', 'Beta', 'gamma', 'Delta', 'épsilon'])[g % 5 + 1] END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE g % 4 END,
       CASE WHEN g % 10 = 0 THEN NULL ELSE (g * 37) % 101 - 50 END,
       CASE WHEN g % 8 = 0 THEN NULL ELSE ((g * 13) % 1000) / 10.0 END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE g / 4.0 END,
       CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END,
       ARRAY[g % 3, g % 5],
       CASE WHEN g % 17 = 0 THEN NULL ELSE g % 12 + 1 END
  FROM generate_series(1, 300) g;
-- 14 regions: a 4 x 3 grid of overlapping squares, one without geometry, two outside the grid.
CREATE TABLE p17_reg (cartodb_id int PRIMARY KEY, the_geom geometry(Polygon, 4326), name text, kind text);
INSERT INTO p17_reg
SELECT r,
       CASE WHEN r = 12 THEN NULL
            ELSE ST_MakeEnvelope(((r - 1) % 4) * 25, ((r - 1) / 4) * 33, ((r - 1) % 4) * 25 + 30, ((r - 1) / 4) * 33 + 30, 4326) END,
       'region ' || r,
       CASE r % 3 WHEN 0 THEN 'urban' WHEN 1 THEN 'rural' END
  FROM generate_series(1, 14) r;
-- Owners of regions: some regions have two (6, 8), some none (3, 10, 13, 14: points lie in 3 and 10), some owners
-- own unknown regions (15, 16).
CREATE TABLE p17_own (cartodb_id int PRIMARY KEY, reg_id int, owner text);
INSERT INTO p17_own SELECT g, (g * 7) % 16 + 1, 'owner ' || (g % 4) FROM generate_series(1, 20) g
 WHERE (g * 7) % 16 + 1 NOT IN (3, 10, 13, 14);
CREATE TABLE p17_empty (LIKE p17_pts);
ANALYZE p17_pts;
ANALYZE p17_reg;
ANALYZE p17_own;
ANALYZE p17_empty;
-- Rows an UPDATE ... FROM / DELETE ... USING of the test modifies (on both sides alike).
DROP TABLE IF EXISTS p17_upd;
CREATE TABLE p17_upd (cartodb_id int PRIMARY KEY, reg_id int, v int, cat text);
INSERT INTO p17_upd SELECT cartodb_id, reg_id, v, cat FROM p17_pts WHERE cartodb_id <= 80;
