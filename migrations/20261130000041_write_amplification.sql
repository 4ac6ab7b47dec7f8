-- Less written per execution (issue 13, write amplification; measured in
-- docs/benchmarks.md). Every index entry on the hot path is a WAL record; these two
-- carried no information any hot-path reader used.
--
-- 1. Attempts: every reader and writer finds one by (execution_id, attempt) — the claim's
--    and the completion's ON CONFLICT, the reaper, the pid recorder — and none by its
--    surrogate id, whose index cost an entry at the claim's insert and another at the
--    completion's update (status is in a partial index's predicate, so that update is never
--    HOT). The pair is now the primary key; `id` keeps its values with no index of its own.
ALTER TABLE attune.execution_attempt
    DROP CONSTRAINT execution_attempt_pkey,
    DROP CONSTRAINT execution_attempt_execution_id_attempt_key,
    ADD CONSTRAINT execution_attempt_pkey PRIMARY KEY (execution_id, attempt);

-- 2. The change log's (tenant_id, id) index cost an entry for each of an execution's five
--    change rows; only a WebSocket client's replay (`since`) used it. The live readers read
--    by id (the primary key), and a replay now walks the primary key from its `since`
--    filtering its tenant — bounded by retention (default 24 h) and paged by its LIMIT.
DROP INDEX attune.change_log_tenant;
