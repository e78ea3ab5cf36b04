-- 17_pushdown_agg_join: aggregates, DISTINCT, ORDER BY/LIMIT above them, and joins computed by CARTO.
-- A corpus of queries runs on the foreign tables and on local copies of the same rows; each line
-- says whether the results are the same (ok) and what was shipped: the plan's top node (Foreign
-- Scan when everything went to CARTO) and each foreign scan's Relations and Remote SQL.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode q@data/17_pushdown_agg_join.sql | sed -E 's/"time":[0-9.e+-]+/"time":T/; s/,"notices":\[[^]]*\]//'; echo
CREATE SCHEMA loc;
SET search_path = loc, public;
\i data/17_pushdown_agg_join.sql
RESET search_path;
CREATE TABLE loc.lookup (k int PRIMARY KEY, label text);
INSERT INTO loc.lookup VALUES (0, 'zero'), (1, 'one'), (2, 'two');
ANALYZE loc.lookup;

CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE SERVER carto_noext FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions '');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_noext OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE pts (cartodb_id int, the_geom geometry(Point, 4326), cat text, grp int, v int, n numeric,
  f float8, flag bool, arr int[], reg_id int) SERVER carto OPTIONS (table_name 'p17_pts');
CREATE FOREIGN TABLE reg (cartodb_id int, the_geom geometry(Polygon, 4326), name text, kind text)
  SERVER carto OPTIONS (table_name 'p17_reg');
CREATE FOREIGN TABLE own (cartodb_id int, reg_id int, owner text) SERVER carto OPTIONS (table_name 'p17_own');
CREATE FOREIGN TABLE empty (cartodb_id int, the_geom geometry(Point, 4326), cat text, grp int, v int, n numeric,
  f float8, flag bool, arr int[], reg_id int) SERVER carto OPTIONS (table_name 'p17_empty');
CREATE FOREIGN TABLE pts_noext (cartodb_id int, the_geom geometry(Point, 4326), cat text, grp int, v int, n numeric,
  f float8, flag bool, arr int[], reg_id int) SERVER carto_noext OPTIONS (table_name 'p17_pts');
CREATE FOREIGN TABLE reg_noext (cartodb_id int, the_geom geometry(Polygon, 4326), name text, kind text)
  SERVER carto_noext OPTIONS (table_name 'p17_reg');
ANALYZE pts;
ANALYZE reg;
ANALYZE own;
ANALYZE empty;

-- A table whose geometry is declared text (hex EWKB) locally, and its local equivalent.
CREATE FOREIGN TABLE pts_text (cartodb_id int, the_geom text, cat text) SERVER carto OPTIONS (table_name 'p17_pts');
CREATE VIEW loc.p17_pts_text AS SELECT cartodb_id, the_geom::text AS the_geom, cat FROM loc.p17_pts;

-- Runs q with {pts} {reg} {own} {empty} {ptsx} {regx} {ptst} as the foreign tables, then as the local
-- copies; compares the rows (in order when q has a top-level ORDER BY, else as multisets).
CREATE FUNCTION pg_temp.run(q text, OUT ok text, OUT nrows int, OUT top text, OUT shipped text)
LANGUAGE plpgsql AS $$
DECLARE r record; a text[] := '{}'; b text[] := '{}'; j jsonb; fq text := q; lq text := q; s text := q;
  names text[] := '{pts,reg,own,empty,ptsx,regx,ptst}';
  ft text[] := '{pts,reg,own,empty,pts_noext,reg_noext,pts_text}';
  lt text[] := '{loc.p17_pts,loc.p17_reg,loc.p17_own,loc.p17_empty,loc.p17_pts,loc.p17_reg,loc.p17_pts_text}';
BEGIN
  FOR i IN 1 .. array_length(names, 1) LOOP
    fq := replace(fq, '{' || names[i] || '}', ft[i]);
    lq := replace(lq, '{' || names[i] || '}', lt[i]);
  END LOOP;
  FOR r IN EXECUTE fq LOOP a := a || r::text; END LOOP;
  FOR r IN EXECUTE lq LOOP b := b || r::text; END LOOP;
  WHILE s ~ '\([^()]*\)' LOOP s := regexp_replace(s, '\([^()]*\)', '', 'g'); END LOOP;
  IF s !~* 'order by' THEN
    a := ARRAY(SELECT x FROM unnest(a) x ORDER BY x);
    b := ARRAY(SELECT x FROM unnest(b) x ORDER BY x);
  END IF;
  ok := CASE WHEN a = b THEN 'ok' ELSE 'MISMATCH' END;
  nrows := coalesce(array_length(a, 1), 0);
  EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) ' || fq INTO j;
  top := j #>> '{0,Plan,Node Type}';
  SELECT string_agg(coalesce('[' || (x ->> 'Relations') || '] ', '') || (x ->> 'Remote SQL'), ' || ')
    INTO shipped FROM jsonb_path_query(j, 'strict $.** ? (@."Node Type" == "Foreign Scan")') x;
END $$;

CREATE TEMP TABLE corpus (id int PRIMARY KEY, q text);
INSERT INTO corpus VALUES
-- Aggregates over one table
 (1, $$SELECT count(*) FROM {pts}$$),
 (2, $$SELECT count(cat), count(grp), count(the_geom) FROM {pts}$$),
 (3, $$SELECT count(DISTINCT cat), count(DISTINCT grp) FROM {pts}$$),
 (4, $$SELECT sum(v), sum(n), sum(f) FROM {pts}$$),
 (5, $$SELECT avg(v), avg(n) FROM {pts}$$),
 (6, $$SELECT min(v), max(v), min(n), max(n), min(f), max(f) FROM {pts}$$),
 (7, $$SELECT min(cat), max(cat) FROM {pts}$$),
 (8, $$SELECT bool_and(flag), bool_or(flag), every(flag) FROM {pts}$$),
 (9, $$SELECT cat, count(*) FROM {pts} GROUP BY cat$$),
 (10, $$SELECT cat, count(*), sum(v), avg(n) FROM {pts} GROUP BY 1 ORDER BY 1 NULLS FIRST$$),
 (11, $$SELECT grp, count(*), count(v) FROM {pts} GROUP BY grp ORDER BY grp$$),
 (12, $$SELECT grp, cat, count(*) FROM {pts} GROUP BY grp, cat$$),
 (13, $$SELECT cat, grp, sum(v) FROM {pts} GROUP BY cat, grp HAVING sum(v) > 0$$),
 (14, $$SELECT cat, count(*) FROM {pts} GROUP BY cat HAVING count(*) > 50$$),
 (15, $$SELECT cat FROM {pts} GROUP BY cat HAVING min(v) < -40 AND max(v) > 40$$),
 (16, $$SELECT v % 5, count(*) FROM {pts} GROUP BY v % 5$$),
 (17, $$SELECT v % 5 AS m, count(*), sum(v) FROM {pts} GROUP BY m ORDER BY m$$),
 (18, $$SELECT (v % 5) + 1, count(*) FROM {pts} GROUP BY v % 5$$),
 (19, $$SELECT lower(cat), count(*) FROM {pts} GROUP BY lower(cat)$$),
 (20, $$SELECT upper(cat) || '!', count(*) FROM {pts} GROUP BY cat$$),
 (21, $$SELECT cat, count(*) * 2 + 1, sum(v) / nullif(count(v), 0) FROM {pts} GROUP BY cat$$),
 (22, $$SELECT count(*) FILTER (WHERE v > 0), count(*) FILTER (WHERE flag), sum(v) FILTER (WHERE cat = 'alpha') FROM {pts}$$),
 (23, $$SELECT cat, count(*) FILTER (WHERE grp IS NULL) FROM {pts} GROUP BY cat$$),
 (24, $$SELECT string_agg(cat, ',' ORDER BY cartodb_id) FROM {pts} WHERE cartodb_id < 20$$),
 (25, $$SELECT grp, string_agg(cat, '|' ORDER BY cat NULLS FIRST, cartodb_id) FROM {pts} GROUP BY grp$$),
 (26, $$SELECT grp, array_agg(v ORDER BY cartodb_id DESC) FROM {pts} WHERE cartodb_id <= 30 GROUP BY grp$$),
 (27, $$SELECT array_agg(DISTINCT grp ORDER BY grp) FROM {pts}$$),
 (28, $$SELECT count(DISTINCT (cat, grp)) FROM {pts}$$),
 (29, $$SELECT stddev(v), variance(v) FROM {pts}$$),
 (30, $$SELECT stddev_samp(n), var_pop(n) FROM {pts}$$),
 (31, $$SELECT bit_and(v), bit_or(v), bit_xor(v) FROM {pts}$$),
 (32, $$SELECT cat, max(n) - min(n) FROM {pts} GROUP BY cat$$),
 (33, $$SELECT flag, count(*) FROM {pts} GROUP BY flag$$),
 (34, $$SELECT flag IS TRUE, count(*) FROM {pts} GROUP BY 1$$),
 (35, $$SELECT coalesce(cat, 'none'), count(*) FROM {pts} GROUP BY 1$$),
 (36, $$SELECT CASE WHEN v < 0 THEN 'neg' WHEN v > 0 THEN 'pos' ELSE 'zero or null' END, count(*) FROM {pts} GROUP BY 1$$),
 (37, $$SELECT arr[1], count(*) FROM {pts} GROUP BY arr[1]$$),
 (38, $$SELECT count(*) FROM {pts} WHERE v > 10$$),
 (39, $$SELECT cat, count(*) FROM {pts} WHERE v BETWEEN -10 AND 10 GROUP BY cat$$),
 (40, $$SELECT cat, count(*) FROM {pts} WHERE cat LIKE '%a%' GROUP BY cat ORDER BY count(*) DESC, cat$$),
 (41, $$SELECT cat, count(*) FROM {pts} GROUP BY cat ORDER BY 2 DESC, 1 LIMIT 2$$),
 (42, $$SELECT grp, sum(v) FROM {pts} GROUP BY grp ORDER BY sum(v) DESC NULLS LAST LIMIT 3$$),
 (43, $$SELECT cat, count(*) FROM {pts} GROUP BY cat ORDER BY cat NULLS LAST LIMIT 3 OFFSET 1$$),
 (44, $$SELECT cat, count(*) FROM {pts} GROUP BY cat LIMIT 100$$),
 (45, $$SELECT count(*) FROM {pts} GROUP BY grp ORDER BY count(*)$$),
 (46, $$SELECT DISTINCT cat FROM {pts}$$),
 (47, $$SELECT DISTINCT grp, flag FROM {pts} ORDER BY 1, 2$$),
 (48, $$SELECT DISTINCT cat FROM {pts} ORDER BY 1 LIMIT 3$$),
 (49, $$SELECT DISTINCT v % 3 FROM {pts}$$),
 (50, $$SELECT DISTINCT ON (cat) cat, cartodb_id FROM {pts} ORDER BY cat, cartodb_id$$),
 (51, $$SELECT grp, count(*) FROM {pts} GROUP BY ROLLUP (grp)$$),
 (52, $$SELECT cat, grp, count(*) FROM {pts} GROUP BY GROUPING SETS ((cat), (grp), ())$$),
 (53, $$SELECT cat, count(*) FROM {pts} GROUP BY CUBE (cat)$$),
 (54, $$SELECT cat, count(*) FROM {pts} WHERE v + random() > -1000 GROUP BY cat$$),
 (55, $$SELECT cat, count(*) FROM {pts} GROUP BY cat HAVING count(*) + random() > 0$$),
 (56, $$SELECT cat, count(*), random() < 2 FROM {pts} GROUP BY cat$$),
 (57, $$SELECT max(cat COLLATE "POSIX") FROM {pts}$$),
 (58, $$SELECT cat COLLATE "POSIX", count(*) FROM {pts} GROUP BY 1$$),
 (59, $$SELECT cat, count(*) FROM {pts} GROUP BY cat ORDER BY cat COLLATE "POSIX" NULLS FIRST$$),
 (98, $$SELECT min(cat COLLATE "C"), max(cat COLLATE "C"), string_agg(cat, ',' ORDER BY cat COLLATE "C", cartodb_id) FROM {pts}$$),
 (99, $$SELECT cat, count(*) FROM {pts} GROUP BY cat ORDER BY cat COLLATE "C" NULLS FIRST$$),
 (60, $$SELECT ST_Extent(the_geom) FROM {pts}$$),
 (61, $$SELECT cat, ST_Extent(the_geom) FROM {pts} GROUP BY cat$$),
 (62, $$SELECT ST_AsText(ST_Collect(the_geom ORDER BY cartodb_id)) FROM {pts} WHERE cartodb_id < 10$$),
 (63, $$SELECT grp, ST_Area(ST_Union(ST_Expand(the_geom, 1))) FROM {pts} GROUP BY grp$$),
 (64, $$SELECT ST_AsText(ST_MakeLine(the_geom ORDER BY cartodb_id)) FROM {pts} WHERE cartodb_id <= 10$$),
 (65, $$SELECT cat, ST_NPoints(ST_Collect(the_geom)) FROM {pts} GROUP BY cat$$),
 (66, $$SELECT ST_Extent(the_geom) FROM {pts} WHERE the_geom && ST_MakeEnvelope(0, 0, 50, 50, 4326)$$),
 (67, $$SELECT ST_Extent(the_geom), count(*) FROM {ptsx}$$),
 (68, $$SELECT count(*) FROM {empty}$$),
 (69, $$SELECT count(*), sum(v), max(cat), ST_Extent(the_geom), string_agg(cat, ',') FROM {empty}$$),
 (70, $$SELECT cat, count(*) FROM {empty} GROUP BY cat$$),
 (71, $$SELECT grp, count(*) FROM {pts} WHERE grp IS NULL GROUP BY grp$$),
 (72, $$SELECT count(*) FROM {pts} WHERE cat IS NULL AND grp IS NULL$$),
 (73, $$SELECT grp, avg(v), min(cat), count(n) FROM {pts} WHERE v IS NULL GROUP BY grp$$),
 (74, $$SELECT count(*), sum(v) FROM {pts} WHERE v > 1000$$),
 (75, $$SELECT count(*) FROM (SELECT DISTINCT cat FROM {pts}) s$$),
 (76, $$SELECT p.cat, count(*) FROM {pts} p JOIN loc.lookup l ON l.k = p.grp GROUP BY p.cat$$),
 (77, $$SELECT l.label, count(*), sum(p.v) FROM {pts} p JOIN loc.lookup l ON l.k = p.grp GROUP BY l.label$$),
 (78, $$SELECT cat, (SELECT count(*) FROM {reg}) FROM {pts} GROUP BY cat$$),
 (79, $$SELECT cat, count(*) FROM {pts} GROUP BY cat HAVING count(*) > (SELECT count(*) * 4 - 3 FROM {reg})$$),
 (80, $$SELECT count(*) FROM {pts} WHERE v > (SELECT avg(v) FROM {pts})$$),
 (81, $$SELECT cat, count(*), sum(count(*)) OVER () FROM {pts} GROUP BY cat$$),
 (82, $$SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM {pts}$$),
 (83, $$SELECT json_agg(v ORDER BY cartodb_id) FROM {pts} WHERE cartodb_id < 8$$),
 (84, $$SELECT count(*) FROM {pts} GROUP BY cat HAVING cat IS NOT NULL$$),
 (85, $$SELECT sum(v)::numeric / count(*) FROM {pts}$$),
 (86, $$SELECT max(arr), min(arr[2]) FROM {pts}$$),
 (87, $$SELECT count(*) FROM {pts} WHERE ST_DWithin(the_geom, ST_SetSRID(ST_MakePoint(50, 50), 4326), 20)$$),
 (88, $$SELECT nullif(grp, 0), count(*) FROM {pts} GROUP BY 1$$),
 (89, $$SELECT greatest(v, 0), count(*) FROM {pts} GROUP BY 1$$),
 (90, $$SELECT cat, min(v), max(v) FROM {pts} GROUP BY cat HAVING count(DISTINCT grp) > 2 ORDER BY min(v), cat$$),
 (91, $$SELECT count(*) FROM {pts} WHERE cat = 'épsilon'$$),
 (92, $$SELECT cat, count(*) FROM {pts} WHERE f IS NOT NULL GROUP BY cat ORDER BY sum(f) DESC LIMIT 2$$),
 (93, $$SELECT grp, count(*) FROM {pts} GROUP BY grp HAVING grp IS NULL OR count(*) < 60$$),
 (94, $$SELECT cat, string_agg(DISTINCT grp::text, ',' ORDER BY grp::text) FROM {pts} GROUP BY cat$$),
 (95, $$SELECT count(*) FILTER (WHERE ST_X(the_geom) < 50), max(ST_Y(the_geom)) FROM {pts}$$),
 (96, $$SELECT cat, string_agg(cartodb_id || ':' || coalesce(the_geom, 'N'), ',' ORDER BY cartodb_id) FROM {ptst} WHERE cartodb_id < 60 GROUP BY cat$$),
 (97, $$SELECT coalesce(grp, v), count(*), sum(CASE WHEN flag THEN v END) FROM {pts} GROUP BY 1$$),
-- Expressions that ship in WHERE and ORDER BY of a plain scan
 (100, $$SELECT cartodb_id, coalesce(cat, '-') FROM {pts} WHERE coalesce(grp, -1) = -1 AND cartodb_id < 30$$),
 (101, $$SELECT cartodb_id FROM {pts} WHERE CASE WHEN v > 0 THEN cat ELSE 'x' END = 'x'$$),
 (102, $$SELECT cartodb_id FROM {pts} WHERE CASE grp WHEN 1 THEN 'one' WHEN 2 THEN 'two' END = 'two'$$),
 (103, $$SELECT cartodb_id FROM {pts} WHERE flag IS NOT FALSE$$),
 (104, $$SELECT cartodb_id FROM {pts} WHERE flag IS UNKNOWN$$),
 (105, $$SELECT cartodb_id FROM {pts} WHERE (v > 0) IS NOT TRUE$$),
 (106, $$SELECT cartodb_id FROM {pts} WHERE arr[2] = 3$$),
 (107, $$SELECT cartodb_id FROM {pts} WHERE nullif(grp, 1) IS NULL$$),
 (108, $$SELECT cartodb_id FROM {pts} WHERE greatest(v, grp) > 40 AND least(v, 0) = 0$$),
 (109, $$SELECT cartodb_id, v FROM {pts} ORDER BY coalesce(v, 0) DESC, cartodb_id LIMIT 7$$),
 (110, $$SELECT cartodb_id, cat FROM {pts} ORDER BY lower(cat) NULLS FIRST, cartodb_id LIMIT 5$$),
 (111, $$SELECT cartodb_id FROM {pts} ORDER BY the_geom <-> ST_SetSRID(ST_MakePoint(50, 50), 4326), cartodb_id LIMIT 5$$),
 (112, $$SELECT cartodb_id FROM {pts} ORDER BY v * 2 + grp, cartodb_id LIMIT 6$$),
 (113, $$SELECT cartodb_id FROM {pts} ORDER BY cat COLLATE "POSIX", cartodb_id LIMIT 4$$),
 (116, $$SELECT cartodb_id, cat FROM {pts} ORDER BY cat COLLATE "C" NULLS FIRST, cartodb_id LIMIT 12$$),
 (114, $$SELECT cartodb_id, coalesce(the_geom, 'N') FROM {ptst} WHERE coalesce(the_geom, 'N') = 'N' OR cartodb_id || ':' || coalesce(the_geom, cat) LIKE '%:01%'$$),
 (115, $$SELECT cartodb_id, CASE WHEN v > 0 THEN the_geom ELSE NULL END FROM {pts} WHERE cartodb_id < 9$$),
-- Joins of two and three foreign tables
 (120, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON ST_Contains(r.the_geom, p.the_geom)$$),
 (121, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON ST_Intersects(p.the_geom, r.the_geom) WHERE p.v > 0$$),
 (122, $$SELECT p.cartodb_id, r.cartodb_id FROM {pts} p JOIN {reg} r ON p.the_geom && r.the_geom$$),
 (123, $$SELECT p.cartodb_id, r.cartodb_id FROM {pts} p JOIN {reg} r ON ST_DWithin(p.the_geom, ST_Centroid(r.the_geom), 10)$$),
 (124, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id$$),
 (125, $$SELECT p.cartodb_id, r.name FROM {pts} p LEFT JOIN {reg} r ON r.cartodb_id = p.reg_id$$),
 (126, $$SELECT p.cartodb_id, r.name FROM {pts} p RIGHT JOIN {reg} r ON r.cartodb_id = p.reg_id AND p.v > 40$$),
 (127, $$SELECT p.cartodb_id, r.name FROM {pts} p FULL JOIN {reg} r ON r.cartodb_id = p.reg_id$$),
 (128, $$SELECT p.cartodb_id FROM {pts} p LEFT JOIN {reg} r ON r.cartodb_id = p.reg_id WHERE r.cartodb_id IS NULL$$),
 (129, $$SELECT r.name, count(p.cartodb_id) FROM {reg} r LEFT JOIN {pts} p ON ST_Contains(r.the_geom, p.the_geom) GROUP BY r.name$$),
 (130, $$SELECT r.name, count(*), sum(p.v) FROM {pts} p JOIN {reg} r ON ST_Contains(r.the_geom, p.the_geom) GROUP BY r.name ORDER BY r.name$$),
 (131, $$SELECT r.kind, count(*) FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id GROUP BY r.kind HAVING count(*) > 10$$),
 (132, $$SELECT p.cat, r.kind, count(*) FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id GROUP BY 1, 2$$),
 (133, $$SELECT p.cartodb_id, r.name, o.owner FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id JOIN {own} o ON o.reg_id = r.cartodb_id$$),
 (134, $$SELECT p.cartodb_id, r.name, o.owner FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id LEFT JOIN {own} o ON o.reg_id = r.cartodb_id$$),
 (135, $$SELECT o.owner, count(*) FROM {pts} p JOIN {reg} r ON ST_Contains(r.the_geom, p.the_geom) JOIN {own} o ON o.reg_id = r.cartodb_id GROUP BY o.owner$$),
 (136, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id ORDER BY p.cartodb_id LIMIT 5$$),
 (137, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id ORDER BY r.name, p.cartodb_id LIMIT 5 OFFSET 3$$),
 (138, $$SELECT count(*) FROM (SELECT p.cartodb_id FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id LIMIT 10) s$$),
 (139, $$SELECT p.cartodb_id, q.cartodb_id FROM {pts} p JOIN {pts} q ON p.cartodb_id = q.cartodb_id + 1 WHERE p.cartodb_id < 50$$),
 (140, $$SELECT p.cartodb_id FROM {pts} p WHERE EXISTS (SELECT 1 FROM {reg} r WHERE r.cartodb_id = p.reg_id AND r.kind = 'urban')$$),
 (141, $$SELECT p.cartodb_id FROM {pts} p WHERE NOT EXISTS (SELECT 1 FROM {reg} r WHERE ST_Contains(r.the_geom, p.the_geom))$$),
 (142, $$SELECT p.cartodb_id FROM {pts} p WHERE p.reg_id IN (SELECT cartodb_id FROM {reg} WHERE kind = 'rural')$$),
 (143, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id WHERE p.cat = 'alpha' AND r.kind IS NOT NULL$$),
 (144, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id WHERE p.v + random() > -1000$$),
 (145, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id AND p.cat COLLATE "POSIX" < r.name$$),
 (146, $$SELECT p.cartodb_id, r.name FROM {pts} p LEFT JOIN {reg} r ON r.cartodb_id = p.reg_id AND p.cat COLLATE "POSIX" < r.name$$),
 (147, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {regx} r ON r.cartodb_id = p.reg_id$$),
 (148, $$SELECT p.cartodb_id, r.name FROM {ptsx} p JOIN {regx} r ON ST_Contains(r.the_geom, p.the_geom)$$),
 (149, $$SELECT count(*) FROM {pts} p JOIN {reg} r ON ST_Contains(r.the_geom, p.the_geom)$$),
 (150, $$SELECT r.name, ST_Extent(p.the_geom) FROM {pts} p JOIN {reg} r ON ST_Contains(r.the_geom, p.the_geom) GROUP BY r.name$$),
 (151, $$SELECT DISTINCT r.kind FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id$$),
 (152, $$SELECT p.cartodb_id, e.cat FROM {pts} p JOIN {empty} e ON e.cartodb_id = p.cartodb_id$$),
 (153, $$SELECT p.cartodb_id, e.cat FROM {pts} p LEFT JOIN {empty} e ON e.cartodb_id = p.cartodb_id WHERE p.cartodb_id < 5$$),
 (154, $$SELECT p.cartodb_id, r.name, l.label FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id JOIN loc.lookup l ON l.k = p.grp$$),
 (155, $$SELECT p.cartodb_id, r.cartodb_id FROM {pts} p JOIN {reg} r ON ST_Contains(r.the_geom, p.the_geom) ORDER BY ST_Distance(p.the_geom, ST_Centroid(r.the_geom)), p.cartodb_id, r.cartodb_id LIMIT 5$$),
 (156, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id WHERE coalesce(p.grp, 0) = 0 AND r.kind IS NOT DISTINCT FROM 'urban'$$),
 (157, $$SELECT r.name, o.owner FROM {reg} r FULL JOIN {own} o ON o.reg_id = r.cartodb_id$$),
 (158, $$SELECT r.name, count(o.cartodb_id), string_agg(o.owner, ',' ORDER BY o.cartodb_id) FROM {reg} r LEFT JOIN {own} o ON o.reg_id = r.cartodb_id GROUP BY r.name ORDER BY r.name LIMIT 4$$),
 (159, $$SELECT r.kind, count(DISTINCT p.cat) FROM {pts} p JOIN {reg} r ON ST_Intersects(r.the_geom, p.the_geom) GROUP BY r.kind$$),
 (160, $$SELECT p.cartodb_id, r.cartodb_id FROM {pts} p JOIN {reg} r ON ST_Contains(r.the_geom, p.the_geom) AND r.kind = 'urban' WHERE p.grp = 1$$),
 (161, $$SELECT p.grp, r.kind, avg(p.n) FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id GROUP BY p.grp, r.kind ORDER BY 1 NULLS FIRST, 2 NULLS FIRST$$),
 (162, $$SELECT p.cartodb_id FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id JOIN {own} o ON o.reg_id = r.cartodb_id WHERE o.owner = 'owner 1' ORDER BY 1 LIMIT 8$$),
 (163, $$SELECT a.name, b.name FROM {reg} a JOIN {reg} b ON a.cartodb_id < b.cartodb_id AND ST_Intersects(a.the_geom, b.the_geom)$$),
 (164, $$SELECT r.name, p.cat FROM {reg} r CROSS JOIN LATERAL (SELECT cat FROM {pts} WHERE reg_id = r.cartodb_id ORDER BY cartodb_id LIMIT 1) p$$),
 (165, $$SELECT count(*) FROM {pts} p JOIN {reg} r ON TRUE$$),
 (166, $$SELECT r.name FROM {reg} r WHERE EXISTS (SELECT 1 FROM {pts} p WHERE ST_Contains(r.the_geom, p.the_geom) AND p.v > 40)$$),
 (167, $$SELECT count(*), sum(p.v) FROM {pts} p WHERE NOT EXISTS (SELECT 1 FROM {own} o WHERE o.reg_id = p.reg_id)$$),
 (168, $$SELECT r.kind, count(*) FROM {reg} r WHERE r.cartodb_id IN (SELECT reg_id FROM {own}) GROUP BY r.kind$$),
 (169, $$SELECT p.cartodb_id, r.name FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id WHERE EXISTS (SELECT 1 FROM {own} o WHERE o.reg_id = r.cartodb_id AND o.owner <> 'owner 2')$$),
 (170, $$SELECT r.name FROM {reg} r WHERE NOT EXISTS (SELECT 1 FROM {own} o WHERE o.reg_id = r.cartodb_id) ORDER BY r.name LIMIT 3$$),
 (171, $$SELECT p.cartodb_id FROM {pts} p WHERE p.cat = 'alpha' AND NOT EXISTS (SELECT 1 FROM {reg} r WHERE r.cartodb_id = p.reg_id AND r.kind IS NULL)$$);

CREATE TEMP TABLE res AS SELECT c.id, r.* FROM corpus c, pg_temp.run(c.q) r;
SELECT id, ok, nrows, top, shipped FROM res ORDER BY id;
SELECT count(*) AS queries, count(*) FILTER (WHERE ok = 'ok') AS same,
       count(*) FILTER (WHERE top = 'Foreign Scan') AS all_remote FROM res;

-- Representative plans in full.
EXPLAIN (VERBOSE, COSTS OFF) SELECT cat, count(*), avg(v) FROM pts GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT r.name, count(*), ST_Extent(p.the_geom) FROM pts p JOIN reg r ON ST_Contains(r.the_geom, p.the_geom)
 WHERE p.v > 0 GROUP BY r.name HAVING count(*) > 5;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT p.cartodb_id, r.name, o.owner FROM pts p LEFT JOIN reg r ON r.cartodb_id = p.reg_id
  FULL JOIN own o ON o.reg_id = r.cartodb_id WHERE p.cat = 'alpha';
-- A join clause that cannot ship (no PostGIS on that server) is evaluated locally above the join:
-- here over CARTO's cross join of the two small tables, as cheaper than reading both; with
-- big tables the cross join's rows make the local join cheaper.
EXPLAIN (VERBOSE, COSTS OFF) SELECT p.cartodb_id, r.name FROM pts_noext p JOIN reg_noext r ON ST_Contains(r.the_geom, p.the_geom);
-- Tables of two servers join locally.
EXPLAIN (VERBOSE, COSTS OFF) SELECT p.cartodb_id, r.name FROM pts p JOIN reg_noext r ON r.cartodb_id = p.reg_id;

-- The pushed aggregate is one /sql request, no COPY request spent.
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT cat, count(*), sum(v) FROM pts GROUP BY cat ORDER BY cat NULLS FIRST;
SELECT r.kind, count(*) FROM pts p JOIN reg r ON ST_Intersects(p.the_geom, r.the_geom) GROUP BY r.kind ORDER BY 1 NULLS FIRST;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; c=collections.Counter((e["group"], e["status"]) for e in json.load(sys.stdin)); print(sorted(c.items()))'

-- A pushed join reads through /copyto when its tables say so (scan_method), through /sql otherwise.
ALTER FOREIGN TABLE pts OPTIONS (ADD scan_method 'copy');
EXPLAIN (VERBOSE, COSTS OFF) SELECT p.cartodb_id, r.name FROM pts p JOIN reg r ON r.cartodb_id = p.reg_id;
SELECT * FROM pg_temp.run($$SELECT p.cartodb_id, r.name, p.the_geom, p.n FROM {pts} p JOIN {reg} r ON r.cartodb_id = p.reg_id$$);
ALTER FOREIGN TABLE pts OPTIONS (DROP scan_method);

-- Prepared statements on generic plans: parameters are sent as literals when the scan starts.
CREATE FUNCTION pg_temp.diff(a regclass, b regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE n int; m int;
BEGIN
  EXECUTE format('SELECT count(*) FROM ((TABLE %s EXCEPT ALL TABLE %s) UNION ALL (TABLE %s EXCEPT ALL TABLE %s)) d', a, b, b, a) INTO n;
  EXECUTE format('SELECT count(*) FROM %s', a) INTO m;
  RETURN CASE WHEN n = 0 THEN 'ok' ELSE 'MISMATCH' END || ' (' || m || ' rows)';
END $$;
SET plan_cache_mode = force_generic_plan;
PREPARE f1(int, text) AS SELECT cat, count(*), sum(v), min(n) FROM pts WHERE v > $1 AND cat <> $2 GROUP BY cat HAVING count(*) > $1 / 10;
PREPARE l1(int, text) AS SELECT cat, count(*), sum(v), min(n) FROM loc.p17_pts WHERE v > $1 AND cat <> $2 GROUP BY cat HAVING count(*) > $1 / 10;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE f1(10, 'alpha');
CREATE TEMP TABLE a1 AS EXECUTE f1(10, 'alpha');
CREATE TEMP TABLE b1 AS EXECUTE l1(10, 'alpha');
CREATE TEMP TABLE a2 AS EXECUTE f1(-45, 'gamma');
CREATE TEMP TABLE b2 AS EXECUTE l1(-45, 'gamma');
SELECT pg_temp.diff('a1', 'b1'), pg_temp.diff('a2', 'b2');
PREPARE f2(float8, int) AS SELECT p.cartodb_id, r.name FROM pts p JOIN reg r ON ST_DWithin(p.the_geom, ST_Centroid(r.the_geom), $1) WHERE p.v > $2;
PREPARE l2(float8, int) AS SELECT p.cartodb_id, r.name FROM loc.p17_pts p JOIN loc.p17_reg r ON ST_DWithin(p.the_geom, ST_Centroid(r.the_geom), $1) WHERE p.v > $2;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE f2(12, 0);
CREATE TEMP TABLE a3 AS EXECUTE f2(12, 0);
CREATE TEMP TABLE b3 AS EXECUTE l2(12, 0);
CREATE TEMP TABLE a4 AS EXECUTE f2(3.5, -20);
CREATE TEMP TABLE b4 AS EXECUTE l2(3.5, -20);
SELECT pg_temp.diff('a3', 'b3'), pg_temp.diff('a4', 'b4');
-- A LIMIT or OFFSET that is a parameter ships too, sent as its value (NULL: no limit, as locally).
PREPARE f3(int) AS SELECT cat, count(*) FROM pts GROUP BY cat ORDER BY 2 DESC, 1 LIMIT $1;
PREPARE l3(int) AS SELECT cat, count(*) FROM loc.p17_pts GROUP BY cat ORDER BY 2 DESC, 1 LIMIT $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE f3(2);
CREATE TEMP TABLE a5 AS EXECUTE f3(2);
CREATE TEMP TABLE b5 AS EXECUTE l3(2);
SELECT pg_temp.diff('a5', 'b5');
PREPARE f4(bigint, bigint) AS SELECT p.cat, r.name FROM pts p JOIN reg r ON ST_Intersects(p.the_geom, r.the_geom) ORDER BY 1, 2 LIMIT $1 OFFSET $2;
PREPARE l4(bigint, bigint) AS SELECT p.cat, r.name FROM loc.p17_pts p JOIN loc.p17_reg r ON ST_Intersects(p.the_geom, r.the_geom) ORDER BY 1, 2 LIMIT $1 OFFSET $2;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE f4(3, 1);
CREATE TEMP TABLE a6 AS EXECUTE f4(3, 1);
CREATE TEMP TABLE b6 AS EXECUTE l4(3, 1);
CREATE TEMP TABLE a7 AS EXECUTE f4(NULL, 2);
CREATE TEMP TABLE b7 AS EXECUTE l4(NULL, 2);
SELECT pg_temp.diff('a6', 'b6'), pg_temp.diff('a7', 'b7');
EXECUTE f4(-1, 0);
RESET plan_cache_mode;

-- With use_remote_estimate, CARTO's planner sizes the join and the aggregate; the results are the same.
ALTER SERVER carto OPTIONS (ADD use_remote_estimate 'true');
SELECT c.id, r.ok, r.top FROM corpus c, pg_temp.run(c.q) r WHERE c.id IN (9, 41, 120, 130, 133, 137, 149) ORDER BY c.id;
ALTER SERVER carto OPTIONS (DROP use_remote_estimate);

-- EXPLAIN ANALYZE counts the requests of a pushed statement: one each.
CREATE FUNCTION pg_temp.requests(q text) RETURNS TABLE (requests bigint, actual_rows bigint) LANGUAGE plpgsql AS $$
DECLARE j jsonb;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) ' || q INTO j;
  RETURN QUERY SELECT sum((x ->> 'CARTO requests')::bigint)::bigint, sum((x ->> 'Actual Rows')::bigint)::bigint
    FROM jsonb_path_query(j, 'strict $.** ? (@."Node Type" == "Foreign Scan")') x;
END $$;
SELECT * FROM pg_temp.requests('SELECT cat, count(*) FROM pts GROUP BY cat');
SELECT * FROM pg_temp.requests('SELECT p.cartodb_id, r.name FROM pts p JOIN reg r ON ST_Contains(r.the_geom, p.the_geom)');

-- UPDATE ... FROM and DELETE ... USING over tables that are all remote: the join ships, and the whole
-- statement with it when it can; the same statements on the local copies give the same rows, and the same
-- row counts (QUIET off shows the command tags: the count a pushed statement reports is CARTO's).
CREATE FOREIGN TABLE upd (cartodb_id int, reg_id int, v int, cat text) SERVER carto OPTIONS (table_name 'p17_upd');
CREATE FUNCTION pg_temp.upd_same() RETURNS text LANGUAGE sql AS $$
  SELECT CASE WHEN (SELECT string_agg(u::text, ',' ORDER BY cartodb_id) FROM upd u)
                 = (SELECT string_agg(u::text, ',' ORDER BY cartodb_id) FROM loc.p17_upd u) THEN 'same' ELSE 'DIFFERENT' END
         || ' (' || (SELECT count(*) FROM upd) || ' rows)' $$;
EXPLAIN (VERBOSE, COSTS OFF)
UPDATE upd u SET v = u.v + r.cartodb_id, cat = r.kind FROM reg r WHERE r.cartodb_id = u.reg_id AND r.kind IS NOT NULL;
\set QUIET off
UPDATE upd u SET v = u.v + r.cartodb_id, cat = r.kind FROM reg r WHERE r.cartodb_id = u.reg_id AND r.kind IS NOT NULL;
UPDATE loc.p17_upd u SET v = u.v + r.cartodb_id, cat = r.kind FROM loc.p17_reg r WHERE r.cartodb_id = u.reg_id AND r.kind IS NOT NULL;
\set QUIET on
SELECT pg_temp.upd_same();
EXPLAIN (VERBOSE, COSTS OFF)
DELETE FROM upd u USING reg r, own o WHERE r.cartodb_id = u.reg_id AND o.reg_id = r.cartodb_id AND o.owner = 'owner 1';
-- Region 8 has two owners named 'owner 1': each of its rows is deleted (and counted) once.
\set QUIET off
DELETE FROM upd u USING reg r, own o WHERE r.cartodb_id = u.reg_id AND o.reg_id = r.cartodb_id AND o.owner = 'owner 1';
DELETE FROM loc.p17_upd u USING loc.p17_reg r, loc.p17_own o WHERE r.cartodb_id = u.reg_id AND o.reg_id = r.cartodb_id AND o.owner = 'owner 1';
\set QUIET on
SELECT pg_temp.upd_same();
-- A SET value that cannot ship (volatile): the join still ships, the rows are updated one by one.
EXPLAIN (VERBOSE, COSTS OFF)
UPDATE upd u SET v = r.cartodb_id + (random() * 0)::int FROM reg r WHERE ST_Contains(r.the_geom, ST_SetSRID(ST_MakePoint(u.v, u.v), 4326));
\set QUIET off
UPDATE upd u SET v = r.cartodb_id + (random() * 0)::int FROM reg r WHERE ST_Contains(r.the_geom, ST_SetSRID(ST_MakePoint(u.v, u.v), 4326)) AND r.cartodb_id = 1;
UPDATE loc.p17_upd u SET v = r.cartodb_id + (random() * 0)::int FROM loc.p17_reg r WHERE ST_Contains(r.the_geom, ST_SetSRID(ST_MakePoint(u.v, u.v), 4326)) AND r.cartodb_id = 1;
\set QUIET on
SELECT pg_temp.upd_same();
-- With a local table in FROM, the statement runs as before (remote rows read, updated by key).
\set QUIET off
UPDATE upd u SET cat = l.label FROM loc.lookup l WHERE l.k = u.reg_id % 3;
UPDATE loc.p17_upd u SET cat = l.label FROM loc.lookup l WHERE l.k = u.reg_id % 3;
\set QUIET on
SELECT pg_temp.upd_same();
