-- [1]
SET search_path TO "public", public;

-- [2]
SET TIME ZONE 'UTC';

-- [3]
SET DateStyle TO 'ISO, YMD';

-- [4]
SET IntervalStyle TO 'postgres';

-- [5]
SET extra_float_digits TO 1;

-- [6]
CREATE SCHEMA IF NOT EXISTS "_retl";

-- [7]
SELECT pg_try_advisory_lock(hashtext('reverse_etl state _retl'));

-- [8]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_migrations" ("version" INT NOT NULL, "description" TEXT, "applied_at" TIMESTAMP);

-- [9]
SELECT MAX("version") FROM "_retl"."_retl_migrations";

-- [10]
BEGIN;

-- [11]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_meta" ("key" TEXT NOT NULL, "value" TEXT);

-- [12]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_syncs" ("sync" TEXT NOT NULL, "snapshot_table" TEXT NOT NULL, "key_columns" TEXT NOT NULL, "value_columns" TEXT NOT NULL, "hash_columns" TEXT NOT NULL, "hash_algorithm" TEXT NOT NULL, "engine_version" TEXT NOT NULL, "created_at" TIMESTAMP NOT NULL, "updated_at" TIMESTAMP NOT NULL, "destination_key" TEXT);

-- [13]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_runs" ("run_id" TEXT NOT NULL, "sync" TEXT NOT NULL, "status" TEXT NOT NULL, "started_at" TIMESTAMP NOT NULL, "finished_at" TIMESTAMP, "duration_s" DOUBLE PRECISION, "added" BIGINT, "changed" BIGINT, "removed" BIGINT, "sent" BIGINT, "failed" BIGINT, "rejected" BIGINT, "full_resync" BOOLEAN, "trigger" TEXT, "error" TEXT);

-- [14]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_row_errors" ("run_id" TEXT NOT NULL, "sync" TEXT NOT NULL, "row_key" TEXT NOT NULL, "action" TEXT NOT NULL, "kind" TEXT NOT NULL, "reason" TEXT NOT NULL, "at" TIMESTAMP NOT NULL);

-- [15]
INSERT INTO "_retl"."_retl_migrations" VALUES (1, 'initial schema', CAST('2026-01-02 03:04:05' AS TIMESTAMP));

-- [16]
COMMIT;

-- [17]
UPDATE "_retl"."_retl_runs" SET "status" = 'aborted', "error" = 'the process ended before the run finished; rows it had not acknowledged are sent by the next run' WHERE "status" = 'running';

-- [18]
CREATE OR REPLACE TEMPORARY VIEW "users" AS SELECT user_id, email, plan FROM raw_users;

-- [19]
CREATE OR REPLACE TEMPORARY VIEW "members" AS SELECT * FROM users AS u WHERE plan <> 'test';

-- [20]
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a WHERE a.attrelid = CAST('"members"' AS regclass) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;

-- [21]
SELECT "snapshot_table", "key_columns", "value_columns", "hash_columns", "hash_algorithm", "destination_key" FROM "_retl"."_retl_syncs" AS x WHERE "sync" = 'braze traits';

-- [22]
BEGIN;

-- [23]
DROP TABLE IF EXISTS "_retl"."snapshot__braze_traits__a8cc0965";

-- [24]
CREATE TABLE "_retl"."snapshot__braze_traits__a8cc0965" AS SELECT "user_id", "email", "plan", CAST(NULL AS TEXT) AS "__retl_hash" FROM "members" WHERE 1 = 0;

-- [25]
INSERT INTO "_retl"."_retl_syncs" ("sync", "snapshot_table", "key_columns", "value_columns", "hash_columns", "hash_algorithm", "engine_version", "created_at", "updated_at", "destination_key") VALUES ('braze traits', 'snapshot__braze_traits__a8cc0965', '["user_id"]', '["email", "plan"]', '["email", "plan"]', 'md5-text/postgres/1', '1', CAST('2026-01-02 03:04:05' AS TIMESTAMP), CAST('2026-01-02 03:04:05' AS TIMESTAMP), 'k1');

-- [26]
COMMIT;

-- [27]
CREATE UNIQUE INDEX ON "_retl"."snapshot__braze_traits__a8cc0965" ("user_id");

-- [28]
CREATE TABLE IF NOT EXISTS "_retl"."snapshot__braze_traits__a8cc0965__held" AS SELECT * FROM "_retl"."snapshot__braze_traits__a8cc0965" WHERE 1 = 0;

-- [29]
CREATE UNIQUE INDEX IF NOT EXISTS "retl_held_acdc367b5e5d4bd5" ON "_retl"."snapshot__braze_traits__a8cc0965__held" ("user_id");

-- [30]
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a WHERE a.attrelid = CAST('"_retl"."snapshot__braze_traits__a8cc0965__held"' AS regclass) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;

-- [31]
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a WHERE a.attrelid = CAST('"_retl"."snapshot__braze_traits__a8cc0965"' AS regclass) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;

-- [32]
DROP TABLE IF EXISTS "__retl_join_1";

-- [33]
CREATE TEMPORARY TABLE "__retl_join_1" AS SELECT CASE WHEN o."__retl_hash" IS NULL THEN 'added' WHEN n."__retl_in_model" IS NULL THEN 'removed' WHEN o."__retl_hash" = 'maybe-held' THEN 'maybe' WHEN n."__retl_hash" <> o."__retl_hash" THEN 'changed' ELSE 'same' END AS "__retl_op", COALESCE(n."user_id", o."user_id") AS "user_id", n."email", n."plan", n."__retl_hash" AS "__retl_hash", o."__retl_hash" AS "__retl_old_hash" FROM (SELECT "user_id", "email", "plan", MD5(COALESCE(CAST(LENGTH(CAST("email" AS TEXT)) AS TEXT) || ':' || CAST("email" AS TEXT), '~') || '|' || COALESCE(CAST(LENGTH(CAST("plan" AS TEXT)) AS TEXT) || ':' || CAST("plan" AS TEXT), '~')) AS "__retl_hash", TRUE AS "__retl_in_model" FROM "members") AS n FULL OUTER JOIN (SELECT "user_id", "__retl_hash" FROM (SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965" AS __retl_s UNION ALL SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS __retl_h) AS __retl_side) AS o ON n."user_id" = o."user_id" WHERE o."__retl_hash" IS NULL OR n."__retl_in_model" IS NULL OR n."__retl_hash" <> o."__retl_hash";

-- [34]
ANALYZE "__retl_join_1";

-- [35]
SELECT COUNT(*) FILTER(WHERE "__retl_op" = 'added'), COUNT(*) FILTER(WHERE "__retl_op" = 'removed'), COUNT(*) FILTER(WHERE "__retl_op" = 'added' AND ("user_id" IS NULL)), (SELECT COUNT(*) FROM (SELECT DISTINCT "user_id" FROM "__retl_join_1" WHERE "__retl_op" = 'added') AS k), (SELECT COUNT(*) FROM "members"), (SELECT COUNT(*) FROM (SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965" AS __retl_s UNION ALL SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS __retl_h) AS __retl_side) FROM "__retl_join_1";

-- [36]
DROP TABLE IF EXISTS "__retl_delta_2";

-- [37]
CREATE TEMPORARY TABLE "__retl_delta_2" AS SELECT ROW_NUMBER() OVER (ORDER BY a."ord", j."user_id") AS "__retl_seq", j."__retl_op", a."kind" AS "__retl_kind", a."action" AS "__retl_action", a."ack" AS "__retl_ack", j."user_id", CASE WHEN a."use_old" THEN s."email" ELSE j."email" END AS "email", j."plan", j."__retl_hash", j."__retl_old_hash" FROM "__retl_join_1" AS j JOIN (VALUES ('added', 'upsert', 'added', 'insert', 2, FALSE), ('changed', 'upsert', 'changed', 'replace', 1, FALSE), ('removed', 'remove', 'removed', 'delete', 0, TRUE), ('maybe', 'upsert', 'added', 'replace', 1, FALSE)) AS a("op", "action", "kind", "ack", "ord", "use_old") ON a."op" = j."__retl_op" LEFT JOIN (SELECT "user_id", "email", "__retl_hash" FROM (SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965" AS __retl_s UNION ALL SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS __retl_h) AS __retl_side) AS s ON j."__retl_op" <> 'added' AND s."user_id" = j."user_id" AND s."__retl_hash" = j."__retl_old_hash";

-- [38]
CREATE INDEX ON "__retl_delta_2"("__retl_seq");

-- [39]
ANALYZE "__retl_delta_2";

-- [40]
DROP TABLE IF EXISTS "__retl_join_1";

-- [41]
SELECT COUNT(*) FILTER(WHERE "__retl_kind" = 'added'), COUNT(*) FILTER(WHERE "__retl_kind" = 'changed'), COUNT(*) FILTER(WHERE "__retl_kind" = 'removed'), COUNT(*), COUNT(*) FILTER(WHERE "__retl_op" = 'changed' AND "__retl_ack" = 'insert'), COUNT(*) FILTER(WHERE "__retl_op" = 'maybe' OR ("__retl_op" = 'removed' AND "__retl_old_hash" = 'maybe-held')), MD5(COALESCE(STRING_AGG(d, '' ORDER BY d), '')) FROM (SELECT "__retl_kind", "__retl_op", "__retl_ack", "__retl_old_hash", MD5(COALESCE(CAST("__retl_seq" AS TEXT), '~') || '|' || COALESCE(CAST("__retl_action" AS TEXT), '~') || '|' || COALESCE(CAST("user_id" AS TEXT), '~') || '|' || COALESCE(CAST("__retl_hash" AS TEXT), '~') || '|' || COALESCE(CAST("__retl_old_hash" AS TEXT), '~')) AS d FROM "__retl_delta_2") AS t;

-- [42]
SELECT MIN("__retl_seq") FILTER(WHERE "__retl_ack" = 'delete'), MAX("__retl_seq") FILTER(WHERE "__retl_ack" = 'delete'), MIN("__retl_seq") FILTER(WHERE "__retl_ack" = 'replace'), MAX("__retl_seq") FILTER(WHERE "__retl_ack" = 'replace'), MIN("__retl_seq") FILTER(WHERE "__retl_ack" = 'insert'), MAX("__retl_seq") FILTER(WHERE "__retl_ack" = 'insert'), MIN("__retl_seq") FILTER(WHERE "__retl_op" IN ('added', 'maybe') OR ("__retl_op" = 'removed' AND "__retl_old_hash" = 'maybe-held')), MAX("__retl_seq") FILTER(WHERE "__retl_op" IN ('added', 'maybe') OR ("__retl_op" = 'removed' AND "__retl_old_hash" = 'maybe-held')) FROM "__retl_delta_2";

-- [43]
SELECT d."__retl_action", d."user_id", d."email", d."plan", s."email", s."plan" FROM (SELECT * FROM "__retl_delta_2" WHERE "__retl_kind" = 'added' ORDER BY "__retl_seq" LIMIT 5) AS d LEFT JOIN "_retl"."snapshot__braze_traits__a8cc0965" AS s ON s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash" ORDER BY d."__retl_seq";

-- [44]
SELECT d."__retl_action", d."user_id", d."email", d."plan", s."email", s."plan" FROM (SELECT * FROM "__retl_delta_2" WHERE "__retl_kind" = 'changed' ORDER BY "__retl_seq" LIMIT 5) AS d LEFT JOIN "_retl"."snapshot__braze_traits__a8cc0965" AS s ON s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash" ORDER BY d."__retl_seq";

-- [45]
SELECT d."__retl_action", d."user_id", d."email", d."plan", s."email", s."plan" FROM (SELECT * FROM "__retl_delta_2" WHERE "__retl_kind" = 'removed' ORDER BY "__retl_seq" LIMIT 5) AS d LEFT JOIN "_retl"."snapshot__braze_traits__a8cc0965" AS s ON s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash" ORDER BY d."__retl_seq";

-- [46]
SELECT "__retl_seq", "__retl_action", "user_id", "email", "plan" FROM "__retl_delta_2" WHERE "__retl_seq" BETWEEN 1 AND 100 ORDER BY "__retl_seq";

-- [47]
INSERT INTO "_retl"."snapshot__braze_traits__a8cc0965__held" ("user_id", "email", "plan", "__retl_hash") SELECT d."user_id", d."email", d."plan", 'maybe-held' FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND d."__retl_op" = 'added' AND NOT EXISTS(SELECT 1 FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS s WHERE s."user_id" = d."user_id");

-- [48]
BEGIN;

-- [49]
DELETE FROM "_retl"."snapshot__braze_traits__a8cc0965" AS s WHERE EXISTS(SELECT 1 FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) AND d."__retl_ack" = 'delete' AND s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash");

-- [50]
DELETE FROM "_retl"."snapshot__braze_traits__a8cc0965" AS s WHERE EXISTS(SELECT 1 FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) AND d."__retl_ack" = 'replace' AND s."user_id" = d."user_id");

-- [51]
DELETE FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS s WHERE EXISTS(SELECT 1 FROM "__retl_delta_2" AS d WHERE (d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) OR ((d."__retl_seq" BETWEEN 3 AND 4) AND d."__retl_op" = 'added')) AND s."user_id" = d."user_id");

-- [52]
INSERT INTO "_retl"."snapshot__braze_traits__a8cc0965" ("user_id", "email", "plan", "__retl_hash") SELECT d."user_id", d."email", d."plan", d."__retl_hash" FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) AND d."__retl_ack" IN ('insert', 'replace');

-- [53]
COMMIT;

-- [54]
INSERT INTO "_retl"."_retl_runs" ("run_id", "sync", "status", "started_at", "full_resync", "trigger") VALUES ('0123456789ab', 'braze traits', 'running', CAST('2026-01-02 03:04:05' AS TIMESTAMP), FALSE, 'cron');

-- [55]
INSERT INTO "_retl"."_retl_row_errors" ("run_id", "sync", "row_key", "action", "kind", "reason", "at") VALUES ('0123456789ab', 'braze traits', 'u3', 'upsert', 'rejected', 'country ''ZZ'' is not ISO 3166', CAST('2026-01-02 03:04:05' AS TIMESTAMP));

-- [56]
UPDATE "_retl"."_retl_runs" SET "status" = 'partial', "finished_at" = CAST('2026-01-02 03:04:05' AS TIMESTAMP), "duration_s" = 0.0, "added" = 0, "changed" = 0, "removed" = 0, "sent" = 96, "failed" = 0, "rejected" = 1, "error" = NULL WHERE "run_id" = '0123456789ab';

-- [57]
BEGIN;

-- [58]
DELETE FROM "_retl"."_retl_row_errors" WHERE "run_id" IN (SELECT "run_id" FROM (SELECT "run_id", ROW_NUMBER() OVER (ORDER BY "started_at" DESC) AS "n" FROM "_retl"."_retl_runs" WHERE "sync" = 'braze traits') AS r WHERE "n" > 1000);

-- [59]
DELETE FROM "_retl"."_retl_runs" WHERE "run_id" IN (SELECT "run_id" FROM (SELECT "run_id", ROW_NUMBER() OVER (ORDER BY "started_at" DESC) AS "n" FROM "_retl"."_retl_runs" WHERE "sync" = 'braze traits') AS r WHERE "n" > 1000);

-- [60]
COMMIT;

-- [61]
BEGIN;

-- [62]
DELETE FROM "_retl"."_retl_meta" WHERE "key" = 'writer:list';

-- [63]
INSERT INTO "_retl"."_retl_meta" ("key", "value") VALUES ('writer:list', '42');

-- [64]
COMMIT;

-- [65]
SELECT "value" FROM "_retl"."_retl_meta" AS x WHERE "key" = 'writer:list';

-- [66]
SELECT "run_id", "sync", "status", "started_at", "finished_at", "duration_s", "added", "changed", "removed", "sent", "failed", "rejected", "full_resync", "trigger", "error" FROM "_retl"."_retl_runs" AS x WHERE "sync" IN ('braze traits') ORDER BY "started_at" DESC LIMIT 20;

