-- The change log after a reader's cursor: the rows in the id ranges ($1[i], $2[i]), ends
-- excluded and ranges in id order, the lowest $3 of them (at most $3 read per range), so a
-- read cut by the limit saw every id up to its last row and none after. The reader
-- (attune_core::change_log::Tail) holds the rows it read past gaps while it waits for them
-- and asks only for what it does not hold: the ranges between the cursor, the rows held
-- and the end of the log (with nothing held, one range: the cursor to the end).
-- Each row carries the statement's snapshot's xmin (the oldest transaction still running),
-- and there is always one row at least — with nothing to read, one whose columns are NULL
-- but the xmin: the reader passes a gap once this xmin is at or past the gap's horizon
-- (horizon.sql), also when nothing new came (a rolled-back writer). It is the snapshot the
-- ranges were read in, so a row whose transaction ended before it is among them.
-- `data` is built here, from the snapshot the writer stored (attune.change_json).
SELECT c.id AS "id?", c.tenant_id, c.entity_type AS "entity_type?", c.entity_id AS "entity_id?",
       c.event AS "event?", attune.change_json(c.data) AS "data?: Json<Box<RawValue>>", c.created_at AS "created_at?", s.xmin AS "xmin!"
  FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) s
  LEFT JOIN LATERAL (
        SELECT l.*
          FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS r(after, before, range)
         CROSS JOIN LATERAL (
                SELECT id, tenant_id, entity_type, entity_id, event, data, created_at
                  FROM attune.change_log
                 WHERE id > r.after AND id < r.before
                 ORDER BY id
                 LIMIT $3) l
         ORDER BY r.range, l.id
         LIMIT $3
       ) c ON true
