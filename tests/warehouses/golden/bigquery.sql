-- [1]
CREATE SCHEMA IF NOT EXISTS `_retl`;

-- [2]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_lock` (`name` STRING NOT NULL, `owner` STRING NOT NULL, `sync` STRING, `acquired_at` TIMESTAMP NOT NULL, `expires_at` TIMESTAMP NOT NULL);

-- [3]
MERGE INTO `_retl`.`_retl_lock` AS l USING (SELECT 'state' AS `name`) AS c ON l.`name` = c.`name` WHEN MATCHED AND l.`expires_at` < CURRENT_TIMESTAMP() THEN UPDATE SET `owner` = 'host:1:t0k3n', `sync` = NULL, `acquired_at` = CURRENT_TIMESTAMP(), `expires_at` = CURRENT_TIMESTAMP() + INTERVAL '300' SECOND WHEN NOT MATCHED THEN INSERT (`name`, `owner`, `sync`, `acquired_at`, `expires_at`) VALUES (c.`name`, 'host:1:t0k3n', NULL, CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP() + INTERVAL '300' SECOND);

-- [4]
SELECT `owner`, `sync`, CAST(`acquired_at` AS STRING), CAST(`expires_at` AS STRING) FROM `_retl`.`_retl_lock` WHERE `name` = 'state';

-- [5]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_migrations` (`version` INT64 NOT NULL, `description` STRING, `applied_at` DATETIME);

-- [6]
SELECT MAX(`version`) FROM `_retl`.`_retl_migrations`;

-- [7]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_meta` (`key` STRING NOT NULL, `value` STRING);

-- [8]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_syncs` (`sync` STRING NOT NULL, `snapshot_table` STRING NOT NULL, `key_columns` STRING NOT NULL, `value_columns` STRING NOT NULL, `hash_columns` STRING NOT NULL, `hash_algorithm` STRING NOT NULL, `engine_version` STRING NOT NULL, `created_at` DATETIME NOT NULL, `updated_at` DATETIME NOT NULL, `destination_key` STRING);

-- [9]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_runs` (`run_id` STRING NOT NULL, `sync` STRING NOT NULL, `status` STRING NOT NULL, `started_at` DATETIME NOT NULL, `finished_at` DATETIME, `duration_s` FLOAT64, `added` INT64, `changed` INT64, `removed` INT64, `sent` INT64, `failed` INT64, `rejected` INT64, `full_resync` BOOL, `trigger` STRING, `error` STRING);

-- [10]
CREATE TABLE IF NOT EXISTS `_retl`.`_retl_row_errors` (`run_id` STRING NOT NULL, `sync` STRING NOT NULL, `row_key` STRING NOT NULL, `action` STRING NOT NULL, `kind` STRING NOT NULL, `reason` STRING NOT NULL, `at` DATETIME NOT NULL);

-- [11]
INSERT INTO `_retl`.`_retl_migrations` VALUES (1, 'initial schema', CAST('2026-01-02 03:04:05' AS DATETIME));

-- [12]
UPDATE `_retl`.`_retl_runs` SET `status` = 'aborted', `error` = 'the process ended before the run finished; rows it had not acknowledged are sent by the next run' WHERE `status` = 'running';

-- [13]
CREATE OR REPLACE VIEW `_retl`.`__retl_t0k3n_model_users` AS SELECT user_id, email, plan FROM raw_users;

-- [14]
CREATE OR REPLACE VIEW `_retl`.`__retl_t0k3n_model_members` AS SELECT * FROM `_retl`.`__retl_t0k3n_model_users` AS u WHERE plan <> 'test';

-- [15]
SELECT column_name, data_type FROM `acme`.`_retl`.INFORMATION_SCHEMA.COLUMNS WHERE table_name = '__retl_t0k3n_model_members' ORDER BY ordinal_position;

-- [16]
SELECT `snapshot_table`, `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `destination_key` FROM `_retl`.`_retl_syncs` AS x WHERE `sync` = 'braze traits';

-- [17]
DROP TABLE IF EXISTS `_retl`.`snapshot__braze_traits__a8cc0965`;

-- [18]
CREATE TABLE `_retl`.`snapshot__braze_traits__a8cc0965` AS SELECT `user_id`, `email`, `plan`, CAST(NULL AS STRING) AS `__retl_hash` FROM `_retl`.`__retl_t0k3n_model_members` WHERE 1 = 0;

-- [19]
INSERT INTO `_retl`.`_retl_syncs` (`sync`, `snapshot_table`, `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `engine_version`, `created_at`, `updated_at`, `destination_key`) VALUES ('braze traits', 'snapshot__braze_traits__a8cc0965', '["user_id"]', '["email", "plan"]', '["email", "plan"]', 'md5-text/bigquery/1', '1', CAST('2026-01-02 03:04:05' AS DATETIME), CAST('2026-01-02 03:04:05' AS DATETIME), 'k1');

-- [20]
CREATE TABLE IF NOT EXISTS `_retl`.`snapshot__braze_traits__a8cc0965__held` AS SELECT * FROM `_retl`.`snapshot__braze_traits__a8cc0965` WHERE 1 = 0;

-- [21]
SELECT column_name, data_type FROM `acme`.`_retl`.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 'snapshot__braze_traits__a8cc0965__held' ORDER BY ordinal_position;

-- [22]
SELECT column_name, data_type FROM `acme`.`_retl`.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 'snapshot__braze_traits__a8cc0965' ORDER BY ordinal_position;

-- [23]
DROP TABLE IF EXISTS `_retl`.`__retl_t0k3n_join_1`;

-- [24]
CREATE TABLE `_retl`.`__retl_t0k3n_join_1` AS SELECT CASE WHEN o.`__retl_hash` IS NULL THEN 'added' WHEN n.`__retl_in_model` IS NULL THEN 'removed' WHEN o.`__retl_hash` = 'maybe-held' THEN 'maybe' WHEN n.`__retl_hash` <> o.`__retl_hash` THEN 'changed' ELSE 'same' END AS `__retl_op`, COALESCE(n.`user_id`, o.`user_id`) AS `user_id`, n.`email`, n.`plan`, n.`__retl_hash` AS `__retl_hash`, o.`__retl_hash` AS `__retl_old_hash` FROM (SELECT `user_id`, `email`, `plan`, TO_HEX(MD5(COALESCE(CAST(LENGTH(CAST(`email` AS STRING)) AS STRING) || ':' || CAST(`email` AS STRING), '~') || '|' || COALESCE(CAST(LENGTH(CAST(`plan` AS STRING)) AS STRING) || ':' || CAST(`plan` AS STRING), '~'))) AS `__retl_hash`, TRUE AS `__retl_in_model` FROM `_retl`.`__retl_t0k3n_model_members`) AS n FULL OUTER JOIN (SELECT `user_id`, `__retl_hash` FROM (SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM `_retl`.`snapshot__braze_traits__a8cc0965` AS __retl_s UNION ALL SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM `_retl`.`snapshot__braze_traits__a8cc0965__held` AS __retl_h) AS __retl_side) AS o ON n.`user_id` = o.`user_id` WHERE o.`__retl_hash` IS NULL OR n.`__retl_in_model` IS NULL OR n.`__retl_hash` <> o.`__retl_hash`;

-- [25]
ALTER TABLE `_retl`.`__retl_t0k3n_join_1` SET OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY));

-- [26]
SELECT COUNTIF(`__retl_op` = 'added'), COUNTIF(`__retl_op` = 'removed'), COUNTIF(`__retl_op` = 'added' AND (`user_id` IS NULL)), (SELECT COUNT(*) FROM (SELECT DISTINCT `user_id` FROM `_retl`.`__retl_t0k3n_join_1` WHERE `__retl_op` = 'added') AS k), (SELECT COUNT(*) FROM `_retl`.`__retl_t0k3n_model_members`), (SELECT COUNT(*) FROM (SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM `_retl`.`snapshot__braze_traits__a8cc0965` AS __retl_s UNION ALL SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM `_retl`.`snapshot__braze_traits__a8cc0965__held` AS __retl_h) AS __retl_side) FROM `_retl`.`__retl_t0k3n_join_1`;

-- [27]
DROP TABLE IF EXISTS `_retl`.`__retl_t0k3n_delta_2`;

-- [28]
CREATE TABLE `_retl`.`__retl_t0k3n_delta_2` AS SELECT ROW_NUMBER() OVER (ORDER BY a.`ord` NULLS LAST, j.`user_id` NULLS LAST) AS `__retl_seq`, j.`__retl_op`, a.`kind` AS `__retl_kind`, a.`action` AS `__retl_action`, a.`ack` AS `__retl_ack`, j.`user_id`, CASE WHEN a.`use_old` THEN s.`email` ELSE j.`email` END AS `email`, j.`plan`, j.`__retl_hash`, j.`__retl_old_hash` FROM `_retl`.`__retl_t0k3n_join_1` AS j JOIN UNNEST([STRUCT('added' AS `op`, 'upsert' AS `action`, 'added' AS `kind`, 'insert' AS `ack`, 2 AS `ord`, FALSE AS `use_old`), STRUCT('changed' AS `op`, 'upsert' AS `action`, 'changed' AS `kind`, 'replace' AS `ack`, 1 AS `ord`, FALSE AS `use_old`), STRUCT('removed' AS `op`, 'remove' AS `action`, 'removed' AS `kind`, 'delete' AS `ack`, 0 AS `ord`, TRUE AS `use_old`), STRUCT('maybe' AS `op`, 'upsert' AS `action`, 'added' AS `kind`, 'replace' AS `ack`, 1 AS `ord`, FALSE AS `use_old`)]) AS a ON a.`op` = j.`__retl_op` LEFT JOIN (SELECT `user_id`, `email`, `__retl_hash` FROM (SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM `_retl`.`snapshot__braze_traits__a8cc0965` AS __retl_s UNION ALL SELECT `user_id`, `email`, `plan`, `__retl_hash` FROM `_retl`.`snapshot__braze_traits__a8cc0965__held` AS __retl_h) AS __retl_side) AS s ON j.`__retl_op` <> 'added' AND s.`user_id` = j.`user_id` AND s.`__retl_hash` = j.`__retl_old_hash`;

-- [29]
ALTER TABLE `_retl`.`__retl_t0k3n_delta_2` SET OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY));

-- [30]
DROP TABLE IF EXISTS `_retl`.`__retl_t0k3n_join_1`;

-- [31]
SELECT COUNTIF(`__retl_kind` = 'added'), COUNTIF(`__retl_kind` = 'changed'), COUNTIF(`__retl_kind` = 'removed'), COUNT(*), COUNTIF(`__retl_op` = 'changed' AND `__retl_ack` = 'insert'), COUNTIF(`__retl_op` = 'maybe' OR (`__retl_op` = 'removed' AND `__retl_old_hash` = 'maybe-held')), TO_HEX(MD5(COALESCE(STRING_AGG(d, '' ORDER BY d), ''))) FROM (SELECT `__retl_kind`, `__retl_op`, `__retl_ack`, `__retl_old_hash`, TO_HEX(MD5(COALESCE(CAST(`__retl_seq` AS STRING), '~') || '|' || COALESCE(CAST(`__retl_action` AS STRING), '~') || '|' || COALESCE(CAST(`user_id` AS STRING), '~') || '|' || COALESCE(CAST(`__retl_hash` AS STRING), '~') || '|' || COALESCE(CAST(`__retl_old_hash` AS STRING), '~'))) AS d FROM `_retl`.`__retl_t0k3n_delta_2`) AS t;

-- [32]
SELECT MIN(IF(`__retl_ack` = 'delete', `__retl_seq`, NULL)), MAX(IF(`__retl_ack` = 'delete', `__retl_seq`, NULL)), MIN(IF(`__retl_ack` = 'replace', `__retl_seq`, NULL)), MAX(IF(`__retl_ack` = 'replace', `__retl_seq`, NULL)), MIN(IF(`__retl_ack` = 'insert', `__retl_seq`, NULL)), MAX(IF(`__retl_ack` = 'insert', `__retl_seq`, NULL)), MIN(IF(`__retl_op` IN ('added', 'maybe') OR (`__retl_op` = 'removed' AND `__retl_old_hash` = 'maybe-held'), `__retl_seq`, NULL)), MAX(IF(`__retl_op` IN ('added', 'maybe') OR (`__retl_op` = 'removed' AND `__retl_old_hash` = 'maybe-held'), `__retl_seq`, NULL)) FROM `_retl`.`__retl_t0k3n_delta_2`;

-- [33]
SELECT d.`__retl_action`, d.`user_id`, d.`email`, d.`plan`, s.`email`, s.`plan` FROM (SELECT * FROM `_retl`.`__retl_t0k3n_delta_2` WHERE `__retl_kind` = 'added' ORDER BY `__retl_seq` NULLS LAST LIMIT 5) AS d LEFT JOIN `_retl`.`snapshot__braze_traits__a8cc0965` AS s ON s.`user_id` = d.`user_id` AND s.`__retl_hash` = d.`__retl_old_hash` ORDER BY d.`__retl_seq` NULLS LAST;

-- [34]
SELECT d.`__retl_action`, d.`user_id`, d.`email`, d.`plan`, s.`email`, s.`plan` FROM (SELECT * FROM `_retl`.`__retl_t0k3n_delta_2` WHERE `__retl_kind` = 'changed' ORDER BY `__retl_seq` NULLS LAST LIMIT 5) AS d LEFT JOIN `_retl`.`snapshot__braze_traits__a8cc0965` AS s ON s.`user_id` = d.`user_id` AND s.`__retl_hash` = d.`__retl_old_hash` ORDER BY d.`__retl_seq` NULLS LAST;

-- [35]
SELECT d.`__retl_action`, d.`user_id`, d.`email`, d.`plan`, s.`email`, s.`plan` FROM (SELECT * FROM `_retl`.`__retl_t0k3n_delta_2` WHERE `__retl_kind` = 'removed' ORDER BY `__retl_seq` NULLS LAST LIMIT 5) AS d LEFT JOIN `_retl`.`snapshot__braze_traits__a8cc0965` AS s ON s.`user_id` = d.`user_id` AND s.`__retl_hash` = d.`__retl_old_hash` ORDER BY d.`__retl_seq` NULLS LAST;

-- [36]
SELECT `__retl_seq`, `__retl_action`, `user_id`, `email`, `plan` FROM `_retl`.`__retl_t0k3n_delta_2` WHERE `__retl_seq` BETWEEN 1 AND 100 ORDER BY `__retl_seq` NULLS LAST;

-- [37]
INSERT INTO `_retl`.`snapshot__braze_traits__a8cc0965__held` (`user_id`, `email`, `plan`, `__retl_hash`) SELECT d.`user_id`, d.`email`, d.`plan`, 'maybe-held' FROM `_retl`.`__retl_t0k3n_delta_2` AS d WHERE d.`__retl_seq` BETWEEN 1 AND 100 AND d.`__retl_op` = 'added' AND NOT EXISTS(SELECT 1 FROM `_retl`.`snapshot__braze_traits__a8cc0965__held` AS s WHERE s.`user_id` = d.`user_id`);

-- [38]
BEGIN TRANSACTION;
DELETE FROM `_retl`.`snapshot__braze_traits__a8cc0965` AS s WHERE EXISTS(SELECT 1 FROM `_retl`.`__retl_t0k3n_delta_2` AS d WHERE d.`__retl_seq` BETWEEN 1 AND 100 AND NOT (d.`__retl_seq` BETWEEN 3 AND 5) AND NOT (d.`__retl_seq` BETWEEN 9 AND 9) AND d.`__retl_ack` = 'delete' AND s.`user_id` = d.`user_id` AND s.`__retl_hash` = d.`__retl_old_hash`);
DELETE FROM `_retl`.`snapshot__braze_traits__a8cc0965` AS s WHERE EXISTS(SELECT 1 FROM `_retl`.`__retl_t0k3n_delta_2` AS d WHERE d.`__retl_seq` BETWEEN 1 AND 100 AND NOT (d.`__retl_seq` BETWEEN 3 AND 5) AND NOT (d.`__retl_seq` BETWEEN 9 AND 9) AND d.`__retl_ack` = 'replace' AND s.`user_id` = d.`user_id`);
DELETE FROM `_retl`.`snapshot__braze_traits__a8cc0965__held` AS s WHERE EXISTS(SELECT 1 FROM `_retl`.`__retl_t0k3n_delta_2` AS d WHERE (d.`__retl_seq` BETWEEN 1 AND 100 AND NOT (d.`__retl_seq` BETWEEN 3 AND 5) AND NOT (d.`__retl_seq` BETWEEN 9 AND 9) OR ((d.`__retl_seq` BETWEEN 3 AND 4) AND d.`__retl_op` = 'added')) AND s.`user_id` = d.`user_id`);
INSERT INTO `_retl`.`snapshot__braze_traits__a8cc0965` (`user_id`, `email`, `plan`, `__retl_hash`) SELECT d.`user_id`, d.`email`, d.`plan`, d.`__retl_hash` FROM `_retl`.`__retl_t0k3n_delta_2` AS d WHERE d.`__retl_seq` BETWEEN 1 AND 100 AND NOT (d.`__retl_seq` BETWEEN 3 AND 5) AND NOT (d.`__retl_seq` BETWEEN 9 AND 9) AND d.`__retl_ack` IN ('insert', 'replace');
COMMIT TRANSACTION;

-- [39]
UPDATE `_retl`.`_retl_lock` SET `expires_at` = CURRENT_TIMESTAMP() + INTERVAL '300' SECOND, `sync` = 'braze traits' WHERE `name` = 'state' AND `owner` = 'host:1:t0k3n';

-- [40]
INSERT INTO `_retl`.`_retl_runs` (`run_id`, `sync`, `status`, `started_at`, `full_resync`, `trigger`) VALUES ('0123456789ab', 'braze traits', 'running', CAST('2026-01-02 03:04:05' AS DATETIME), FALSE, 'cron');

-- [41]
INSERT INTO `_retl`.`_retl_row_errors` (`run_id`, `sync`, `row_key`, `action`, `kind`, `reason`, `at`) VALUES ('0123456789ab', 'braze traits', 'u3', 'upsert', 'rejected', 'country \'ZZ\' is not ISO 3166', CAST('2026-01-02 03:04:05' AS DATETIME));

-- [42]
UPDATE `_retl`.`_retl_runs` SET `status` = 'partial', `finished_at` = CAST('2026-01-02 03:04:05' AS DATETIME), `duration_s` = 0.0, `added` = 0, `changed` = 0, `removed` = 0, `sent` = 96, `failed` = 0, `rejected` = 1, `error` = NULL WHERE `run_id` = '0123456789ab';

-- [43]
BEGIN TRANSACTION;
DELETE FROM `_retl`.`_retl_row_errors` WHERE `run_id` IN (SELECT `run_id` FROM (SELECT `run_id`, ROW_NUMBER() OVER (ORDER BY `started_at` DESC NULLS FIRST) AS `n` FROM `_retl`.`_retl_runs` WHERE `sync` = 'braze traits') AS r WHERE `n` > 1000);
DELETE FROM `_retl`.`_retl_runs` WHERE `run_id` IN (SELECT `run_id` FROM (SELECT `run_id`, ROW_NUMBER() OVER (ORDER BY `started_at` DESC NULLS FIRST) AS `n` FROM `_retl`.`_retl_runs` WHERE `sync` = 'braze traits') AS r WHERE `n` > 1000);
COMMIT TRANSACTION;

-- [44]
BEGIN TRANSACTION;
DELETE FROM `_retl`.`_retl_meta` WHERE `key` = 'writer:list';
INSERT INTO `_retl`.`_retl_meta` (`key`, `value`) VALUES ('writer:list', '42');
COMMIT TRANSACTION;

-- [45]
SELECT `value` FROM `_retl`.`_retl_meta` AS x WHERE `key` = 'writer:list';

-- [46]
SELECT `run_id`, `sync`, `status`, `started_at`, `finished_at`, `duration_s`, `added`, `changed`, `removed`, `sent`, `failed`, `rejected`, `full_resync`, `trigger`, `error` FROM `_retl`.`_retl_runs` AS x WHERE `sync` IN ('braze traits') ORDER BY `started_at` DESC NULLS FIRST LIMIT 20;

-- [47]
DROP TABLE IF EXISTS `_retl`.`__retl_t0k3n_delta_2`;

-- [48]
DROP VIEW IF EXISTS `_retl`.`__retl_t0k3n_model_members`;

-- [49]
DROP VIEW IF EXISTS `_retl`.`__retl_t0k3n_model_users`;

-- [50]
DELETE FROM `_retl`.`_retl_lock` WHERE `name` = 'state' AND `owner` = 'host:1:t0k3n';

