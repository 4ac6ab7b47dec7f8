-- A WebSocket client's replay: tenant $1's changes of the entity types $2 with ids in
-- ($3, $4] — $4 is where the live feed it joined takes over — in id order, at most $5
-- (the primary key from $3: the log is kept 24 h by default, and a replay pages).
SELECT id, tenant_id, entity_type, entity_id, event, attune.change_json(data) AS "data!: Json<Box<RawValue>>", created_at
  FROM attune.change_log
 WHERE tenant_id = $1 AND entity_type = ANY($2) AND id > $3 AND id <= $4
 ORDER BY id
 LIMIT $5
