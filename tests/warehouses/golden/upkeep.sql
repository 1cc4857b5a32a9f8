-- snowflake
-- [1]
UPDATE "_retl"."_retl_lock" SET "expires_at" = CURRENT_TIMESTAMP() + INTERVAL '300 SECOND' WHERE "name" = 'state' AND "owner" = 'host:1:t0k3n';

-- [2]
SELECT "owner", "sync", CAST("acquired_at" AS VARCHAR), CAST("expires_at" AS VARCHAR) FROM "_retl"."_retl_lock" WHERE "name" = 'state';

-- bigquery
-- [1]
UPDATE `_retl`.`_retl_lock` SET `expires_at` = CURRENT_TIMESTAMP() + INTERVAL '300' SECOND WHERE `name` = 'state' AND `owner` = 'host:1:t0k3n';

-- [2]
SELECT `owner`, `sync`, CAST(`acquired_at` AS STRING), CAST(`expires_at` AS STRING) FROM `_retl`.`_retl_lock` WHERE `name` = 'state';

-- databricks
-- [1]
UPDATE `_retl`.`_retl_lock` SET `expires_at` = CURRENT_TIMESTAMP() + INTERVAL '300' SECOND WHERE `name` = 'state' AND `owner` = 'host:1:t0k3n';

-- [2]
SELECT `owner`, `sync`, CAST(`acquired_at` AS STRING), CAST(`expires_at` AS STRING) FROM `_retl`.`_retl_lock` WHERE `name` = 'state';

-- [3]
SELECT `snapshot_table`, `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `destination_key` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `sync` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_syncs`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `sync` = 's';

-- [4]
SELECT `key`, `value` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `key` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_meta`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `key` LIKE 'retl:%';

-- [5]
SELECT COUNT(*) FROM `_retl`.`snapshot__s__0f1e2d3c`;

-- [6]
SELECT COUNT(*) FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__s__0f1e2d3c`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x;

-- [7]
INSERT INTO `_retl`.`_retl_meta` (`key`, `value`, `__retl_v`, `__retl_gone`) VALUES ('retl:compaction:s', '{"old": "snapshot__s__0f1e2d3c", "new": "snapshot__s__a0f1490a__c7069288980000000"}', 7069288980000000, FALSE);

-- [8]
DESCRIBE `_retl`.`snapshot__s__0f1e2d3c`;

-- [9]
CREATE TABLE `_retl`.`snapshot__s__a0f1490a__c7069288980000000` AS SELECT `user_id`, `email`, `__retl_hash`, `__retl_v`, `__retl_gone` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__s__0f1e2d3c`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x;

-- [10]
DESCRIBE `_retl`.`snapshot__s__0f1e2d3c__held`;

-- [11]
CREATE TABLE `_retl`.`snapshot__s__a0f1490a__c7069288980000000__held` AS SELECT `user_id`, `email`, `__retl_hash`, `__retl_v`, `__retl_gone` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__s__0f1e2d3c__held`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x;

-- [12]
SELECT COUNT(*) FROM `_retl`.`snapshot__s__a0f1490a__c7069288980000000`;

-- [13]
SELECT COUNT(*) FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`snapshot__s__0f1e2d3c`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x;

-- [14]
INSERT INTO `_retl`.`_retl_syncs` (`sync`, `snapshot_table`, `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `engine_version`, `created_at`, `updated_at`, `destination_key`, `__retl_v`, `__retl_gone`) SELECT `sync`, 'snapshot__s__a0f1490a__c7069288980000000', `key_columns`, `value_columns`, `hash_columns`, `hash_algorithm`, `engine_version`, `created_at`, `updated_at`, `destination_key`, 7069288980000000, FALSE FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `sync` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_syncs`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x WHERE `sync` = 's';

-- [15]
DROP TABLE IF EXISTS `_retl`.`snapshot__s__0f1e2d3c`;

-- [16]
DROP TABLE IF EXISTS `_retl`.`snapshot__s__0f1e2d3c__held`;

-- [17]
INSERT INTO `_retl`.`_retl_meta` (`key`, `value`, `__retl_v`, `__retl_gone`) VALUES ('retl:compaction:s', NULL, 7069288980000000, TRUE);

-- [18]
SELECT COUNT(DISTINCT `run_id`) FROM `_retl`.`_retl_runs` WHERE `sync` = 's';

-- [19]
INSERT INTO `_retl`.`_retl_meta` (`key`, `value`, `__retl_v`, `__retl_gone`) VALUES ('retl:prune', '{"runs": "_retl_runs__keep7069288980000000", "errors": "_retl_row_errors__keep7069288980000000", "ready": false}', 7069288980000000, FALSE);

-- [20]
DESCRIBE `_retl`.`_retl_runs`;

-- [21]
CREATE TABLE `_retl`.`_retl_runs__keep7069288980000000` AS SELECT `run_id`, `sync`, `status`, `started_at`, `finished_at`, `duration_s`, `added`, `changed`, `removed`, `sent`, `failed`, `rejected`, `full_resync`, `trigger`, `error`, `__retl_v`, `__retl_gone` FROM (SELECT x.*, ROW_NUMBER() OVER (PARTITION BY `sync` ORDER BY `started_at` DESC NULLS FIRST) AS `__retl_n` FROM (SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY `run_id` ORDER BY `__retl_v` DESC NULLS FIRST) AS `__retl_rn` FROM `_retl`.`_retl_runs`) AS `__retl_log` WHERE `__retl_rn` = 1 AND NOT `__retl_gone`) AS x) AS k WHERE `__retl_n` <= 2;

-- [22]
DESCRIBE `_retl`.`_retl_row_errors`;

-- [23]
CREATE TABLE `_retl`.`_retl_row_errors__keep7069288980000000` AS SELECT `run_id`, `sync`, `row_key`, `action`, `kind`, `reason`, `at` FROM `_retl`.`_retl_row_errors` AS e WHERE `run_id` IN (SELECT `run_id` FROM `_retl`.`_retl_runs__keep7069288980000000`);

-- [24]
INSERT INTO `_retl`.`_retl_meta` (`key`, `value`, `__retl_v`, `__retl_gone`) VALUES ('retl:prune', '{"runs": "_retl_runs__keep7069288980000000", "errors": "_retl_row_errors__keep7069288980000000", "ready": true}', 7069288980000000, FALSE);

-- [25]
INSERT OVERWRITE TABLE `_retl`.`_retl_runs` SELECT * FROM `_retl`.`_retl_runs__keep7069288980000000`;

-- [26]
INSERT OVERWRITE TABLE `_retl`.`_retl_row_errors` SELECT * FROM `_retl`.`_retl_row_errors__keep7069288980000000`;

-- [27]
DROP TABLE IF EXISTS `_retl`.`_retl_runs__keep7069288980000000`;

-- [28]
DROP TABLE IF EXISTS `_retl`.`_retl_row_errors__keep7069288980000000`;

-- [29]
INSERT INTO `_retl`.`_retl_meta` (`key`, `value`, `__retl_v`, `__retl_gone`) VALUES ('retl:prune', NULL, 7069288980000000, TRUE);

