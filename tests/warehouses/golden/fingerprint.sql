-- bigquery
SELECT COUNT(*), CAST(COALESCE(SUM(CAST(FARM_FINGERPRINT(TO_JSON_STRING(`__retl_t`)) AS BIGNUMERIC)), 0) AS STRING) FROM `Sales`.`Customers` AS `__retl_t`;

-- databricks
SELECT COUNT(*), CAST(COALESCE(SUM(CAST(XXHASH64(*) AS DECIMAL(38, 0))), 0) AS STRING) FROM `Sales`.`Customers` AS `__retl_t`;

-- postgres
SELECT COUNT(*), CAST(COALESCE(SUM(HASHTEXTEXTENDED(CAST("__retl_t" AS TEXT), 0)), 0) AS TEXT) FROM "Sales"."Customers" AS "__retl_t";

-- snowflake
SELECT COUNT(*), CAST(COALESCE(SUM(HASH(*)), 0) AS VARCHAR) FROM "Sales"."Customers" AS "__retl_t";

-- spark
SELECT COUNT(*), CAST(COALESCE(SUM(CAST(XXHASH64(*) AS DECIMAL(38, 0))), 0) AS STRING) FROM `Sales`.`Customers` AS `__retl_t`;
