-- The oldest transaction still running (xmin) and the first not yet started (xmax), as
-- numbers: a gap in the change log's ids is final once xmin has passed the xmax of the
-- moment it was seen.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS "xmin!",
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS "xmax!"
