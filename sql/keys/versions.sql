-- `attune keys status`: how many sealed values each key version holds, for datastore
-- items and executions' secret parameters (the version is bytes 3-6 of the blob's header).
SELECT 'datastore items' AS "what!", key_version AS "version!", count(*) AS "count!"
  FROM attune.datastore_item
 WHERE encrypted
 GROUP BY key_version
UNION ALL
SELECT 'secret parameters', ('x' || encode(substring(secret_params FROM 3 FOR 4), 'hex'))::bit(32)::int, count(*)
  FROM attune.execution
 WHERE secret_params IS NOT NULL
 GROUP BY 2
ORDER BY 1, 2
