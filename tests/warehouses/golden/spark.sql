-- [1]
SET spark.sql.session.timeZone = UTC;

-- [2]
CREATE DATABASE IF NOT EXISTS `default`;

-- [3]
USE `default`;

-- [4]
CREATE SCHEMA IF NOT EXISTS `_retl`;

-- [5]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_migrations` (`version` INT NOT NULL, `description` STRING, `applied_at` TIMESTAMP);

-- [6]
SELECT MAX(`version`) FROM `_retl`.`_retl_migrations`;

-- [7]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_meta` (`key` STRING NOT NULL, `value` STRING, `__retl_v` BIGINT, `__retl_gone` BOOLEAN);

-- [8]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_syncs` (`sync` STRING NOT NULL, `snapshot_table` STRING NOT NULL, `key_columns` STRING NOT NULL, `value_columns` STRING NOT NULL, `hash_columns` STRING NOT NULL, `hash_algorithm` STRING NOT NULL, `engine_version` STRING NOT NULL, `created_at` TIMESTAMP NOT NULL, `updated_at` TIMESTAMP NOT NULL, `destination_key` STRING, `__retl_v` BIGINT, `__retl_gone` BOOLEAN);

-- [9]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_runs` (`run_id` STRING NOT NULL, `sync` STRING NOT NULL, `status` STRING NOT NULL, `started_at` TIMESTAMP NOT NULL, `finished_at` TIMESTAMP, `duration_s` DOUBLE, `added` BIGINT, `changed` BIGINT, `removed` BIGINT, `sent` BIGINT, `failed` BIGINT, `rejected` BIGINT, `full_resync` BOOLEAN, `trigger` STRING, `error` STRING, `__retl_v` BIGINT, `__retl_gone` BOOLEAN);

-- [10]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_row_errors` (`run_id` STRING NOT NULL, `sync` STRING NOT NULL, `row_key` STRING NOT NULL, `action` STRING NOT NULL, `kind` STRING NOT NULL, `reason` STRING NOT NULL, `at` TIMESTAMP NOT NULL);

-- [11]
INSERT INTO `_retl`.`_retl_migrations` VALUES (1, 'initial schema', CAST('2026-01-02 03:04:05' AS TIMESTAMP));

-- [12]
SELECT `run_id` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `run_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_runs`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `status` = 'running' LIMIT 1;

-- [13]
CREATE OR REPLACE TEMPORARY VIEW `users` AS SELECT user_id, email, plan FROM raw_users;

-- [14]
CREATE OR REPLACE TEMPORARY VIEW `members` AS SELECT * FROM users AS u WHERE plan <> 'test';

-- [15]
DESCRIBE `members`;

-- [16]
SELECT `snapshot_table`, `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `destination_key` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `sync` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_syncs`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `sync` = 'braze traits';

-- [17]
DROP TABLE IF EXISTS `_retl`.`snapshot__braze_traits__a8cc0965`;

-- [18]
CREATE TABLE `_retl`.`snapshot__braze_traits__a8cc0965` AS SELECT `user_id`, `email`, `plan`, CAST(NULL AS STRING) AS `__retl_hash`, CAST(NULL AS BIGINT) AS `__retl_v`, CAST(NULL AS BOOLEAN) AS `__retl_gone` FROM `members` WHERE 1 = 0;

-- [19]
INSERT INTO `_retl`.`_retl_syncs` (`sync`, `snapshot_table`, `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `engine_version`, `created_at`, `updated_at`, `destination_key`, `__retl_v`, `__retl_gone`) VALUES ('braze traits', 'snapshot__braze_traits__a8cc0965', '["user_id"]', '["email", "plan"]', '["email", "plan"]', 'md5-text/spark/1', '1', CAST('2026-01-02 03:04:05' AS TIMESTAMP), CAST('2026-01-02 03:04:05' AS TIMESTAMP), 'k1', 7069288980000000, FALSE);

-- [20]
CREATE TABLE IF NOT EXISTS `_retl`.`snapshot__braze_traits__a8cc0965__held` AS SELECT * FROM `_retl`.`snapshot__braze_traits__a8cc0965` WHERE 1 = 0;

-- [21]
DESCRIBE `_retl`.`snapshot__braze_traits__a8cc0965__held`;

-- [22]
DESCRIBE `_retl`.`snapshot__braze_traits__a8cc0965`;

-- [23]
UNCACHE TABLE IF EXISTS `__retl_t0k3n_join_1`;

-- [24]
DROP VIEW IF EXISTS `__retl_t0k3n_join_1`;

-- [25]
CACHE TABLE `__retl_t0k3n_join_1` AS SELECT CASE WHEN o.`__retl_hash` IS NULL THEN 'added' WHEN n.`__retl_in_model` IS NULL THEN 'removed' WHEN o.`__retl_hash` = 'maybe-held' THEN 'maybe' WHEN n.`__retl_hash` <> o.`__retl_hash` THEN 'changed' ELSE 'same' END AS `__retl_op`, COALESCE(n.`user_id`, o.`user_id`) AS `user_id`, n.`email`, n.`plan`, n.`__retl_hash` AS `__retl_hash`, o.`__retl_hash` AS `__retl_old_hash` FROM (SELECT `user_id`, `email`, `plan`, MD5(COALESCE(CAST(LENGTH(CAST(`email` AS STRING)) AS STRING) || ':' || CAST(`email` AS STRING), '~') || '|' || COALESCE(CAST(LENGTH(CAST(`plan` AS STRING)) AS STRING) || ':' || CAST(`plan` AS STRING), '~')) AS `__retl_hash`, TRUE AS `__retl_in_model` FROM `members`) AS n FULL OUTER JOIN (SELECT `user_id`, `__retl_hash` FROM (SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS __retl_s UNION ALL SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965__held`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS __retl_h) AS __retl_side) AS o ON n.`user_id` = o.`user_id` WHERE o.`__retl_hash` IS NULL OR n.`__retl_in_model` IS NULL OR n.`__retl_hash` <> o.`__retl_hash`;

-- [26]
SELECT COUNT(*) FILTER(WHERE `__retl_op` = 'added'), COUNT(*) FILTER(WHERE `__retl_op` = 'removed'), COUNT(*) FILTER(WHERE `__retl_op` = 'added' AND (`user_id` IS NULL)), (SELECT COUNT(*) FROM (SELECT DISTINCT `user_id` FROM `__retl_t0k3n_join_1` WHERE `__retl_op` = 'added') AS k), (SELECT COUNT(*) FROM `members`), (SELECT COUNT(*) FROM (SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS __retl_s UNION ALL SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965__held`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS __retl_h) AS __retl_side) FROM `__retl_t0k3n_join_1`;

-- [27]
UNCACHE TABLE IF EXISTS `__retl_t0k3n_delta_2`;

-- [28]
DROP VIEW IF EXISTS `__retl_t0k3n_delta_2`;

-- [29]
CACHE TABLE `__retl_t0k3n_delta_2` AS SELECT ROW_NUMBER() OVER (ORDER BY a.`ord` NULLS LAST, j.`user_id` NULLS LAST) AS `__retl_seq`, j.`__retl_op`, a.`kind` AS `__retl_kind`, a.`action` AS `__retl_action`, a.`ack` AS `__retl_ack`, j.`user_id`, CASE WHEN a.`use_old` THEN s.`email` ELSE j.`email` END AS `email`, j.`plan`, j.`__retl_hash`, j.`__retl_old_hash` FROM `__retl_t0k3n_join_1` AS j JOIN VALUES ('added', 'upsert', 'added', 'insert', 2, FALSE), ('changed', 'upsert', 'changed', 'replace', 1, FALSE), ('removed', 'remove', 'removed', 'delete', 0, TRUE), ('maybe', 'upsert', 'added', 'replace', 1, FALSE) AS a(`op`, `action`, `kind`, `ack`, `ord`, `use_old`) ON a.`op` = j.`__retl_op` LEFT JOIN (SELECT `user_id`, `email`, `__retl_hash` FROM (SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS __retl_s UNION ALL SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965__held`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS __retl_h) AS __retl_side) AS s ON j.`__retl_op` <> 'added' AND s.`user_id` = j.`user_id` AND s.`__retl_hash` = j.`__retl_old_hash`;

-- [30]
SELECT COUNT(*) FILTER(WHERE `__retl_kind` = 'added'), COUNT(*) FILTER(WHERE `__retl_kind` = 'changed'), COUNT(*) FILTER(WHERE `__retl_kind` = 'removed'), COUNT(*), COUNT(*) FILTER(WHERE `__retl_op` = 'changed' AND `__retl_ack` = 'insert'), COUNT(*) FILTER(WHERE `__retl_op` = 'maybe' OR (`__retl_op` = 'removed' AND `__retl_old_hash` = 'maybe-held')), MD5(COALESCE(LISTAGG(d, '') WITHIN GROUP (ORDER BY d NULLS LAST), '')) FROM (SELECT `__retl_kind`, `__retl_op`, `__retl_ack`, `__retl_old_hash`, MD5(COALESCE(CAST(`__retl_seq` AS STRING), '~') || '|' || COALESCE(CAST(`__retl_action` AS STRING), '~') || '|' || COALESCE(CAST(`user_id` AS STRING), '~') || '|' || COALESCE(CAST(`__retl_hash` AS STRING), '~') || '|' || COALESCE(CAST(`__retl_old_hash` AS STRING), '~')) AS d FROM `__retl_t0k3n_delta_2`) AS t;

-- [31]
SELECT MIN(`__retl_seq`) FILTER(WHERE `__retl_ack` = 'delete'), MAX(`__retl_seq`) FILTER(WHERE `__retl_ack` = 'delete'), MIN(`__retl_seq`) FILTER(WHERE `__retl_ack` = 'replace'), MAX(`__retl_seq`) FILTER(WHERE `__retl_ack` = 'replace'), MIN(`__retl_seq`) FILTER(WHERE `__retl_ack` = 'insert'), MAX(`__retl_seq`) FILTER(WHERE `__retl_ack` = 'insert'), MIN(`__retl_seq`) FILTER(WHERE `__retl_op` IN ('added', 'maybe') OR (`__retl_op` = 'removed' AND `__retl_old_hash` = 'maybe-held')), MAX(`__retl_seq`) FILTER(WHERE `__retl_op` IN ('added', 'maybe') OR (`__retl_op` = 'removed' AND `__retl_old_hash` = 'maybe-held')) FROM `__retl_t0k3n_delta_2`;

-- [32]
SELECT d.`__retl_action`, d.`user_id`, d.`email`, d.`plan`, s.`email`, s.`plan` FROM (SELECT * FROM `__retl_t0k3n_delta_2` WHERE `__retl_kind` = 'added' ORDER BY `__retl_seq` NULLS LAST LIMIT 5) AS d LEFT JOIN (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS s ON s.`user_id` = d.`user_id` AND s.`__retl_hash` = d.`__retl_old_hash` ORDER BY d.`__retl_seq` NULLS LAST;

-- [33]
SELECT d.`__retl_action`, d.`user_id`, d.`email`, d.`plan`, s.`email`, s.`plan` FROM (SELECT * FROM `__retl_t0k3n_delta_2` WHERE `__retl_kind` = 'changed' ORDER BY `__retl_seq` NULLS LAST LIMIT 5) AS d LEFT JOIN (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS s ON s.`user_id` = d.`user_id` AND s.`__retl_hash` = d.`__retl_old_hash` ORDER BY d.`__retl_seq` NULLS LAST;

-- [34]
SELECT d.`__retl_action`, d.`user_id`, d.`email`, d.`plan`, s.`email`, s.`plan` FROM (SELECT * FROM `__retl_t0k3n_delta_2` WHERE `__retl_kind` = 'removed' ORDER BY `__retl_seq` NULLS LAST LIMIT 5) AS d LEFT JOIN (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS s ON s.`user_id` = d.`user_id` AND s.`__retl_hash` = d.`__retl_old_hash` ORDER BY d.`__retl_seq` NULLS LAST;

-- [35]
SELECT `__retl_seq`, `__retl_action`, `user_id`, `email`, `plan` FROM `__retl_t0k3n_delta_2` WHERE `__retl_seq` BETWEEN 1 AND 100 ORDER BY `__retl_seq` NULLS LAST;

-- [36]
INSERT INTO `_retl`.`snapshot__braze_traits__a8cc0965__held` (`user_id`, `email`, `plan`, `__retl_hash`, `__retl_v`, `__retl_gone`) SELECT d.`user_id`, d.`email`, d.`plan`, 'maybe-held', 7069288980000004, FALSE FROM `__retl_t0k3n_delta_2` AS d LEFT JOIN (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__braze_traits__a8cc0965__held`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS c ON c.`user_id` = d.`user_id` WHERE d.`__retl_seq` BETWEEN 1 AND 100 AND d.`__retl_op` = 'added' AND c.`user_id` IS NULL;

-- [37]
INSERT INTO `_retl`.`snapshot__braze_traits__a8cc0965` (`user_id`, `email`, `plan`, `__retl_hash`, `__retl_v`, `__retl_gone`) SELECT d.`user_id`, CASE WHEN d.`__retl_ack` = 'delete' THEN NULL ELSE d.`email` END, CASE WHEN d.`__retl_ack` = 'delete' THEN NULL ELSE d.`plan` END, CASE WHEN d.`__retl_ack` = 'delete' THEN NULL ELSE d.`__retl_hash` END, 7069288980000008 + CASE d.`__retl_ack` WHEN 'delete' THEN 0 WHEN 'replace' THEN 1 ELSE 2 END, d.`__retl_ack` = 'delete' FROM `__retl_t0k3n_delta_2` AS d LEFT JOIN (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM (SELECT * FROM `_retl`.`snapshot__braze_traits__a8cc0965` AS `__retl_t` WHERE EXISTS(SELECT 1 FROM `__retl_t0k3n_delta_2` AS k WHERE k.`__retl_seq` BETWEEN 1 AND 100 AND k.`user_id` = `__retl_t`.`user_id`)) AS `__retl_chunk`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS c ON c.`user_id` = d.`user_id` WHERE d.`__retl_seq` BETWEEN 1 AND 100 AND NOT (d.`__retl_seq` BETWEEN 3 AND 5) AND NOT (d.`__retl_seq` BETWEEN 9 AND 9) AND ((d.`__retl_ack` = 'delete' AND c.`__retl_hash` = d.`__retl_old_hash`) OR d.`__retl_ack` = 'replace' OR (d.`__retl_ack` = 'insert' AND (c.`user_id` IS NULL OR EXISTS(SELECT 1 FROM `__retl_t0k3n_delta_2` AS l WHERE l.`__retl_seq` BETWEEN 1 AND 100 AND NOT (l.`__retl_seq` BETWEEN 3 AND 5) AND NOT (l.`__retl_seq` BETWEEN 9 AND 9) AND l.`__retl_ack` = 'delete' AND l.`user_id` = d.`user_id` AND l.`__retl_old_hash` = c.`__retl_hash`))));

-- [38]
INSERT INTO `_retl`.`snapshot__braze_traits__a8cc0965__held` (`user_id`, `email`, `plan`, `__retl_hash`, `__retl_v`, `__retl_gone`) SELECT c.`user_id`, c.`email`, c.`plan`, NULL, 7069288980000012, TRUE FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM (SELECT * FROM `_retl`.`snapshot__braze_traits__a8cc0965__held` AS `__retl_t` WHERE EXISTS(SELECT 1 FROM `__retl_t0k3n_delta_2` AS k WHERE k.`__retl_seq` BETWEEN 1 AND 100 AND k.`user_id` = `__retl_t`.`user_id`)) AS `__retl_chunk`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS c WHERE EXISTS(SELECT 1 FROM `__retl_t0k3n_delta_2` AS d WHERE (d.`__retl_seq` BETWEEN 1 AND 100 AND NOT (d.`__retl_seq` BETWEEN 3 AND 5) AND NOT (d.`__retl_seq` BETWEEN 9 AND 9) OR ((d.`__retl_seq` BETWEEN 3 AND 4) AND d.`__retl_op` = 'added')) AND c.`user_id` = d.`user_id`);

-- [39]
INSERT INTO `_retl`.`_retl_runs` (`run_id`, `sync`, `status`, `started_at`, `full_resync`, `trigger`, `__retl_v`, `__retl_gone`) VALUES ('0123456789ab', 'braze traits', 'running', CAST('2026-01-02 03:04:05' AS TIMESTAMP), FALSE, 'cron', 7069288980000016, FALSE);

-- [40]
INSERT INTO `_retl`.`_retl_row_errors` (`run_id`, `sync`, `row_key`, `action`, `kind`, `reason`, `at`) VALUES ('0123456789ab', 'braze traits', 'u3', 'upsert', 'rejected', 'country \'ZZ\' is not ISO 3166', CAST('2026-01-02 03:04:05' AS TIMESTAMP));

-- [41]
INSERT INTO `_retl`.`_retl_runs` (`run_id`, `sync`, `status`, `started_at`, `finished_at`, `duration_s`, `added`, `changed`, `removed`, `sent`, `failed`, `rejected`, `full_resync`, `trigger`, `error`, `__retl_v`, `__retl_gone`) VALUES ('0123456789ab', 'braze traits', 'partial', CAST('2026-01-02 03:04:05' AS TIMESTAMP), CAST('2026-01-02 03:04:05' AS TIMESTAMP), 0.0, 0, 0, 0, 96, 0, 1, FALSE, 'cron', NULL, 7069288980000020, FALSE);

-- [42]
SELECT `snapshot_table`, `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `destination_key` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `sync` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_syncs`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `sync` = 'braze traits';

-- [43]
SELECT `key`, `value` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `key` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_meta`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `key` LIKE 'retl:%';

-- [44]
SELECT COUNT(DISTINCT `run_id`) FROM `_retl`.`_retl_runs` WHERE `sync` = 'braze traits';

-- [45]
INSERT INTO `_retl`.`_retl_meta` (`key`, `value`, `__retl_v`, `__retl_gone`) VALUES ('writer:list', '42', 7069288980000024, FALSE);

-- [46]
SELECT `value` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `key` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_meta`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `key` = 'writer:list';

-- [47]
SELECT `run_id`, `sync`, `status`, `started_at`, `finished_at`, `duration_s`, `added`, `changed`, `removed`, `sent`, `failed`, `rejected`, `full_resync`, `trigger`, `error` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `run_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_runs`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `sync` IN ('braze traits') ORDER BY `started_at` DESC NULLS FIRST LIMIT 20;

-- [48]
UNCACHE TABLE IF EXISTS `__retl_t0k3n_delta_2`;

-- [49]
DROP VIEW IF EXISTS `__retl_t0k3n_delta_2`;

-- [50]
UNCACHE TABLE IF EXISTS `__retl_t0k3n_join_1`;

-- [51]
DROP VIEW IF EXISTS `__retl_t0k3n_join_1`;

