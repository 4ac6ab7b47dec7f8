-- The horizon of a gap in the change log (attune_core::change_log::Tail), read right after
-- the read that saw the gap: a transaction id assigned now, so higher than that of every
-- transaction that could hold the missing id (each had its id before the row past the
-- gap committed). Once a later snapshot's oldest running transaction (xmin) is at or past
-- it, every such writer has ended. Not the snapshot's xmax: that is the latest *completed*
-- transaction id + 1, and a writer still running can hold an id at or above it (it started
-- after the last commit) — passing the gap on that bound loses its row.
-- This statement commits on its own; it wrote nothing, so its commit is not flushed. Run
-- only when a gap is first seen.
SELECT pg_current_xact_id()::text::bigint AS "xid!"
