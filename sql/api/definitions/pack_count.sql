-- How many packs tenant $1 can see.
SELECT count(*) AS "count!" FROM attune.pack WHERE tenant_id = $1 OR tenant_id IS NULL
