-- The change log after a reader's cursor $1, in id order, at most $2 rows, each with the
-- statement's snapshot's xmin (the oldest transaction still running). The reader
-- (attune_core::change_log::Tail) delivers rows only while ids are contiguous and passes
-- a gap once this xmin is at or past the gap's horizon (horizon.sql): it is the snapshot
-- the rows were read in, so a row whose transaction ended before it is among them.
SELECT id, tenant_id, entity_type, entity_id, event, data AS "data: Json<Box<RawValue>>", created_at,
       pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS "xmin!"
  FROM attune.change_log
 WHERE id > $1
 ORDER BY id
 LIMIT $2
