-- The oldest transaction still running (the snapshot's xmin), as a number: every writer
-- whose transaction id is below it has ended.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS "xmin!"
