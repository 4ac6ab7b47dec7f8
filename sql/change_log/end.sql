-- Where a live reader starts: the last id now, and a transaction id assigned after this
-- statement's snapshot (see horizon.sql: higher than that of every writer that could still
-- hold an id up to the last one). Once the oldest running transaction is past it, every
-- row up to that id is final. The statement commits on its own, unflushed (it wrote nothing).
SELECT COALESCE(max(id), 0) AS "last_id!",
       pg_current_xact_id()::text::bigint AS "horizon!"
  FROM attune.change_log
