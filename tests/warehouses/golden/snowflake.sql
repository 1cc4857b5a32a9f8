-- [1]
CREATE SCHEMA IF NOT EXISTS "_retl";

-- [2]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_lock" ("name" VARCHAR NOT NULL, "owner" VARCHAR NOT NULL, "sync" VARCHAR, "acquired_at" TIMESTAMPTZ NOT NULL, "expires_at" TIMESTAMPTZ NOT NULL);

-- [3]
MERGE INTO "_retl"."_retl_lock" AS l USING (SELECT 'state' AS "name") AS c ON l."name" = c."name" WHEN MATCHED AND l."expires_at" < CURRENT_TIMESTAMP() THEN UPDATE SET "owner" = 'host:1:t0k3n', "sync" = NULL, "acquired_at" = CURRENT_TIMESTAMP(), "expires_at" = CURRENT_TIMESTAMP() + INTERVAL '300 SECOND' WHEN NOT MATCHED THEN INSERT ("name", "owner", "sync", "acquired_at", "expires_at") VALUES (c."name", 'host:1:t0k3n', NULL, CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP() + INTERVAL '300 SECOND');

-- [4]
SELECT "owner", "sync", CAST("acquired_at" AS VARCHAR), CAST("expires_at" AS VARCHAR) FROM "_retl"."_retl_lock" WHERE "name" = 'state';

-- [5]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_migrations" ("version" INT NOT NULL, "description" VARCHAR, "applied_at" TIMESTAMP);

-- [6]
SELECT MAX("version") FROM "_retl"."_retl_migrations";

-- [7]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_meta" ("key" VARCHAR NOT NULL, "value" VARCHAR);

-- [8]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_syncs" ("sync" VARCHAR NOT NULL, "snapshot_table" VARCHAR NOT NULL, "key_columns" VARCHAR NOT NULL, "value_columns" VARCHAR NOT NULL, "hash_columns" VARCHAR NOT NULL, "hash_algorithm" VARCHAR NOT NULL, "engine_version" VARCHAR NOT NULL, "created_at" TIMESTAMP NOT NULL, "updated_at" TIMESTAMP NOT NULL, "destination_key" VARCHAR);

-- [9]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_runs" ("run_id" VARCHAR NOT NULL, "sync" VARCHAR NOT NULL, "status" VARCHAR NOT NULL, "started_at" TIMESTAMP NOT NULL, "finished_at" TIMESTAMP, "duration_s" DOUBLE, "added" BIGINT, "changed" BIGINT, "removed" BIGINT, "sent" BIGINT, "failed" BIGINT, "rejected" BIGINT, "full_resync" BOOLEAN, "trigger" VARCHAR, "error" VARCHAR);

-- [10]
CREATE TABLE IF NOT EXISTS "_retl"."_retl_row_errors" ("run_id" VARCHAR NOT NULL, "sync" VARCHAR NOT NULL, "row_key" VARCHAR NOT NULL, "action" VARCHAR NOT NULL, "kind" VARCHAR NOT NULL, "reason" VARCHAR NOT NULL, "at" TIMESTAMP NOT NULL);

-- [11]
INSERT INTO "_retl"."_retl_migrations" VALUES (1, 'initial schema', CAST('2026-01-02 03:04:05' AS TIMESTAMP));

-- [12]
UPDATE "_retl"."_retl_runs" SET "status" = 'aborted', "error" = 'the process ended before the run finished; rows it had not acknowledged are sent by the next run' WHERE "status" = 'running';

-- [13]
CREATE OR REPLACE TEMPORARY VIEW "USERS" AS SELECT user_id, email, plan FROM raw_users;

-- [14]
CREATE OR REPLACE TEMPORARY VIEW "MEMBERS" AS SELECT * FROM users AS u WHERE plan <> 'test';

-- [15]
DESCRIBE TABLE "MEMBERS";

-- [16]
SELECT "snapshot_table", "key_columns", "value_columns", "hash_columns", "hash_algorithm", "destination_key" FROM "_retl"."_retl_syncs" AS x WHERE "sync" = 'braze traits';

-- [17]
DROP TABLE IF EXISTS "_retl"."snapshot__braze_traits__a8cc0965";

-- [18]
CREATE TABLE "_retl"."snapshot__braze_traits__a8cc0965" AS SELECT "user_id", "email", "plan", CAST(NULL AS VARCHAR) AS "__retl_hash" FROM "MEMBERS" WHERE 1 = 0;

-- [19]
INSERT INTO "_retl"."_retl_syncs" ("sync", "snapshot_table", "key_columns", "value_columns", "hash_columns", "hash_algorithm", "engine_version", "created_at", "updated_at", "destination_key") VALUES ('braze traits', 'snapshot__braze_traits__a8cc0965', '["user_id"]', '["email", "plan"]', '["email", "plan"]', 'md5-text/snowflake/1', '1', CAST('2026-01-02 03:04:05' AS TIMESTAMP), CAST('2026-01-02 03:04:05' AS TIMESTAMP), 'k1');

-- [20]
CREATE TABLE IF NOT EXISTS "_retl"."snapshot__braze_traits__a8cc0965__held" AS SELECT * FROM "_retl"."snapshot__braze_traits__a8cc0965" WHERE 1 = 0;

-- [21]
DESCRIBE TABLE "_retl"."snapshot__braze_traits__a8cc0965__held";

-- [22]
DESCRIBE TABLE "_retl"."snapshot__braze_traits__a8cc0965";

-- [23]
DROP TABLE IF EXISTS "__retl_join_1";

-- [24]
CREATE TEMPORARY TABLE "__retl_join_1" AS SELECT CASE WHEN o."__retl_hash" IS NULL THEN 'added' WHEN n."__retl_in_model" IS NULL THEN 'removed' WHEN o."__retl_hash" = 'maybe-held' THEN 'maybe' WHEN n."__retl_hash" <> o."__retl_hash" THEN 'changed' ELSE 'same' END AS "__retl_op", COALESCE(n."user_id", o."user_id") AS "user_id", n."email", n."plan", n."__retl_hash" AS "__retl_hash", o."__retl_hash" AS "__retl_old_hash" FROM (SELECT "user_id", "email", "plan", MD5(COALESCE(CAST(LENGTH(CAST("email" AS VARCHAR)) AS VARCHAR) || ':' || CAST("email" AS VARCHAR), '~') || '|' || COALESCE(CAST(LENGTH(CAST("plan" AS VARCHAR)) AS VARCHAR) || ':' || CAST("plan" AS VARCHAR), '~')) AS "__retl_hash", TRUE AS "__retl_in_model" FROM "MEMBERS") AS n FULL OUTER JOIN (SELECT "user_id", "__retl_hash" FROM (SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965" AS __retl_s UNION ALL SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS __retl_h) AS __retl_side) AS o ON n."user_id" = o."user_id" WHERE o."__retl_hash" IS NULL OR n."__retl_in_model" IS NULL OR n."__retl_hash" <> o."__retl_hash";

-- [25]
SELECT COUNT_IF("__retl_op" = 'added'), COUNT_IF("__retl_op" = 'removed'), COUNT_IF("__retl_op" = 'added' AND ("user_id" IS NULL)), (SELECT COUNT(*) FROM (SELECT DISTINCT "user_id" FROM "__retl_join_1" WHERE "__retl_op" = 'added') AS k), (SELECT COUNT(*) FROM "MEMBERS"), (SELECT COUNT(*) FROM (SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965" AS __retl_s UNION ALL SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS __retl_h) AS __retl_side) FROM "__retl_join_1";

-- [26]
DROP TABLE IF EXISTS "__retl_delta_2";

-- [27]
CREATE TEMPORARY TABLE "__retl_delta_2" AS SELECT ROW_NUMBER() OVER (ORDER BY a."ord", j."user_id") AS "__retl_seq", j."__retl_op", a."kind" AS "__retl_kind", a."action" AS "__retl_action", a."ack" AS "__retl_ack", j."user_id", CASE WHEN a."use_old" THEN s."email" ELSE j."email" END AS "email", j."plan", j."__retl_hash", j."__retl_old_hash" FROM "__retl_join_1" AS j JOIN (VALUES ('added', 'upsert', 'added', 'insert', 2, FALSE), ('changed', 'upsert', 'changed', 'replace', 1, FALSE), ('removed', 'remove', 'removed', 'delete', 0, TRUE), ('maybe', 'upsert', 'added', 'replace', 1, FALSE)) AS a("op", "action", "kind", "ack", "ord", "use_old") ON a."op" = j."__retl_op" LEFT JOIN (SELECT "user_id", "email", "__retl_hash" FROM (SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965" AS __retl_s UNION ALL SELECT "user_id", "email", "plan", "__retl_hash" FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS __retl_h) AS __retl_side) AS s ON j."__retl_op" <> 'added' AND s."user_id" = j."user_id" AND s."__retl_hash" = j."__retl_old_hash";

-- [28]
DROP TABLE IF EXISTS "__retl_join_1";

-- [29]
SELECT COUNT_IF("__retl_kind" = 'added'), COUNT_IF("__retl_kind" = 'changed'), COUNT_IF("__retl_kind" = 'removed'), COUNT(*), COUNT_IF("__retl_op" = 'changed' AND "__retl_ack" = 'insert'), COUNT_IF("__retl_op" = 'maybe' OR ("__retl_op" = 'removed' AND "__retl_old_hash" = 'maybe-held')), MD5(COALESCE(LISTAGG(d, '') WITHIN GROUP (ORDER BY d), '')) FROM (SELECT "__retl_kind", "__retl_op", "__retl_ack", "__retl_old_hash", MD5(COALESCE(CAST("__retl_seq" AS VARCHAR), '~') || '|' || COALESCE(CAST("__retl_action" AS VARCHAR), '~') || '|' || COALESCE(CAST("user_id" AS VARCHAR), '~') || '|' || COALESCE(CAST("__retl_hash" AS VARCHAR), '~') || '|' || COALESCE(CAST("__retl_old_hash" AS VARCHAR), '~')) AS d FROM "__retl_delta_2") AS t;

-- [30]
SELECT MIN(IFF("__retl_ack" = 'delete', "__retl_seq", NULL)), MAX(IFF("__retl_ack" = 'delete', "__retl_seq", NULL)), MIN(IFF("__retl_ack" = 'replace', "__retl_seq", NULL)), MAX(IFF("__retl_ack" = 'replace', "__retl_seq", NULL)), MIN(IFF("__retl_ack" = 'insert', "__retl_seq", NULL)), MAX(IFF("__retl_ack" = 'insert', "__retl_seq", NULL)), MIN(IFF("__retl_op" IN ('added', 'maybe') OR ("__retl_op" = 'removed' AND "__retl_old_hash" = 'maybe-held'), "__retl_seq", NULL)), MAX(IFF("__retl_op" IN ('added', 'maybe') OR ("__retl_op" = 'removed' AND "__retl_old_hash" = 'maybe-held'), "__retl_seq", NULL)) FROM "__retl_delta_2";

-- [31]
SELECT d."__retl_action", d."user_id", d."email", d."plan", s."email", s."plan" FROM (SELECT * FROM "__retl_delta_2" WHERE "__retl_kind" = 'added' ORDER BY "__retl_seq" LIMIT 5) AS d LEFT JOIN "_retl"."snapshot__braze_traits__a8cc0965" AS s ON s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash" ORDER BY d."__retl_seq";

-- [32]
SELECT d."__retl_action", d."user_id", d."email", d."plan", s."email", s."plan" FROM (SELECT * FROM "__retl_delta_2" WHERE "__retl_kind" = 'changed' ORDER BY "__retl_seq" LIMIT 5) AS d LEFT JOIN "_retl"."snapshot__braze_traits__a8cc0965" AS s ON s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash" ORDER BY d."__retl_seq";

-- [33]
SELECT d."__retl_action", d."user_id", d."email", d."plan", s."email", s."plan" FROM (SELECT * FROM "__retl_delta_2" WHERE "__retl_kind" = 'removed' ORDER BY "__retl_seq" LIMIT 5) AS d LEFT JOIN "_retl"."snapshot__braze_traits__a8cc0965" AS s ON s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash" ORDER BY d."__retl_seq";

-- [34]
SELECT "__retl_seq", "__retl_action", "user_id", "email", "plan" FROM "__retl_delta_2" WHERE "__retl_seq" BETWEEN 1 AND 100 ORDER BY "__retl_seq";

-- [35]
INSERT INTO "_retl"."snapshot__braze_traits__a8cc0965__held" ("user_id", "email", "plan", "__retl_hash") SELECT d."user_id", d."email", d."plan", 'maybe-held' FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND d."__retl_op" = 'added' AND NOT EXISTS(SELECT 1 FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS s WHERE s."user_id" = d."user_id");

-- [36]
BEGIN;

-- [37]
DELETE FROM "_retl"."snapshot__braze_traits__a8cc0965" AS s WHERE EXISTS(SELECT 1 FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) AND d."__retl_ack" = 'delete' AND s."user_id" = d."user_id" AND s."__retl_hash" = d."__retl_old_hash");

-- [38]
DELETE FROM "_retl"."snapshot__braze_traits__a8cc0965" AS s WHERE EXISTS(SELECT 1 FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) AND d."__retl_ack" = 'replace' AND s."user_id" = d."user_id");

-- [39]
DELETE FROM "_retl"."snapshot__braze_traits__a8cc0965__held" AS s WHERE EXISTS(SELECT 1 FROM "__retl_delta_2" AS d WHERE (d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) OR ((d."__retl_seq" BETWEEN 3 AND 4) AND d."__retl_op" = 'added')) AND s."user_id" = d."user_id");

-- [40]
INSERT INTO "_retl"."snapshot__braze_traits__a8cc0965" ("user_id", "email", "plan", "__retl_hash") SELECT d."user_id", d."email", d."plan", d."__retl_hash" FROM "__retl_delta_2" AS d WHERE d."__retl_seq" BETWEEN 1 AND 100 AND NOT (d."__retl_seq" BETWEEN 3 AND 5) AND NOT (d."__retl_seq" BETWEEN 9 AND 9) AND d."__retl_ack" IN ('insert', 'replace');

-- [41]
COMMIT;

-- [42]
UPDATE "_retl"."_retl_lock" SET "expires_at" = CURRENT_TIMESTAMP() + INTERVAL '300 SECOND', "sync" = 'braze traits' WHERE "name" = 'state' AND "owner" = 'host:1:t0k3n';

-- [43]
INSERT INTO "_retl"."_retl_runs" ("run_id", "sync", "status", "started_at", "full_resync", "trigger") VALUES ('0123456789ab', 'braze traits', 'running', CAST('2026-01-02 03:04:05' AS TIMESTAMP), FALSE, 'cron');

-- [44]
INSERT INTO "_retl"."_retl_row_errors" ("run_id", "sync", "row_key", "action", "kind", "reason", "at") VALUES ('0123456789ab', 'braze traits', 'u3', 'upsert', 'rejected', 'country \'ZZ\' is not ISO 3166', CAST('2026-01-02 03:04:05' AS TIMESTAMP));

-- [45]
UPDATE "_retl"."_retl_runs" SET "status" = 'partial', "finished_at" = CAST('2026-01-02 03:04:05' AS TIMESTAMP), "duration_s" = 0.0, "added" = 0, "changed" = 0, "removed" = 0, "sent" = 96, "failed" = 0, "rejected" = 1, "error" = NULL WHERE "run_id" = '0123456789ab';

-- [46]
BEGIN;

-- [47]
DELETE FROM "_retl"."_retl_row_errors" WHERE "run_id" IN (SELECT "run_id" FROM (SELECT "run_id", ROW_NUMBER() OVER (ORDER BY "started_at" DESC) AS "n" FROM "_retl"."_retl_runs" WHERE "sync" = 'braze traits') AS r WHERE "n" > 1000);

-- [48]
DELETE FROM "_retl"."_retl_runs" WHERE "run_id" IN (SELECT "run_id" FROM (SELECT "run_id", ROW_NUMBER() OVER (ORDER BY "started_at" DESC) AS "n" FROM "_retl"."_retl_runs" WHERE "sync" = 'braze traits') AS r WHERE "n" > 1000);

-- [49]
COMMIT;

-- [50]
BEGIN;

-- [51]
DELETE FROM "_retl"."_retl_meta" WHERE "key" = 'writer:list';

-- [52]
INSERT INTO "_retl"."_retl_meta" ("key", "value") VALUES ('writer:list', '42');

-- [53]
COMMIT;

-- [54]
SELECT "value" FROM "_retl"."_retl_meta" AS x WHERE "key" = 'writer:list';

-- [55]
SELECT "run_id", "sync", "status", "started_at", "finished_at", "duration_s", "added", "changed", "removed", "sent", "failed", "rejected", "full_resync", "trigger", "error" FROM "_retl"."_retl_runs" AS x WHERE "sync" IN ('braze traits') ORDER BY "started_at" DESC LIMIT 20;

-- [56]
DELETE FROM "_retl"."_retl_lock" WHERE "name" = 'state' AND "owner" = 'host:1:t0k3n';

