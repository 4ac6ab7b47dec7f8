-- Where a live reader starts: the last id now, and the first transaction id not yet
-- started (once the oldest running transaction is past it, every row up to that id is final).
SELECT COALESCE(max(id), 0) AS "last_id!",
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS "xmax!"
  FROM attune.change_log
