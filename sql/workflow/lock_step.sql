-- Opens a step of workflow $1: locks its row (another executor stepping it: skipped, no
-- row) and, under that lock, takes in its children that ended and were not consumed yet
-- (`ended`, in the order they were created) — one round trip for what were two. Every
-- change to a workflow happens under this lock, so two child completions arriving
-- together are taken in one after the other; a child that ends after this statement's
-- snapshot is taken in by the next step (its completion wakes the engine again).
-- `timed_out` is set when the workflow has run longer than its action's timeout;
-- `definitions_version` tells the engine whether the actions it cached are still current.
-- $2 is the version of the workflow's state the engine holds (-1: none): while the stored
-- state still has it, its definition, task states, variables and with-items lists are not
-- sent again (NULL). A workflow without state (not started) has no step: no row.
-- The state row is locked too, and that is what makes it current: under READ COMMITTED a
-- row read by a join comes from the statement's snapshot, so a step another executor
-- committed between that snapshot and this lock would be read as it was before (its
-- task states, its count of running tasks) and then overwritten; a row locked here is
-- re-read at its latest version.
WITH parent AS (
    SELECT e.id, e.tenant_id, e.status, e.parameters, e.secret_params,
           ws.definition, ws.tasks, ws.variables, ws.failed_tasks, ws.depth, ws.active,
           ws.abort_error, ws.items, ws.version,
           CASE WHEN e.status IN ('running', 'paused')
                 AND e.started_at + make_interval(secs => a.timeout_seconds) < now()
                THEN a.timeout_seconds END AS timed_out
      FROM attune.execution e
      JOIN attune.workflow_state ws ON ws.execution_id = e.id
      LEFT JOIN attune.action a ON a.id = e.action_id
     WHERE e.id = $1
       FOR UPDATE OF e, ws SKIP LOCKED
), ended AS (
    UPDATE attune.execution c
       SET consumed_at = clock_timestamp()
     WHERE c.parent_id = (SELECT id FROM parent) AND c.consumed_at IS NULL
       AND c.status IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')
    RETURNING c.id, c.workflow_task, c.item_index, c.status, c.result
)
SELECT p.id AS "id!", p.tenant_id AS "tenant_id!", p.status AS "status!: ExecutionStatus",
       p.parameters AS "parameters!", p.secret_params,
       CASE WHEN p.version = $2 THEN NULL ELSE p.definition END AS "definition?",
       CASE WHEN p.version = $2 THEN NULL ELSE p.tasks END AS "tasks?",
       CASE WHEN p.version = $2 THEN NULL ELSE p.variables END AS "variables?",
       p.failed_tasks AS "failed_tasks?", p.depth AS "depth?", p.active AS "active?", p.abort_error AS "abort_error?",
       CASE WHEN p.version = $2 THEN NULL ELSE p.items END AS "items?", p.timed_out AS "timed_out?",
       p.version AS "version?",
       (SELECT COALESCE(jsonb_agg(jsonb_build_object('task', workflow_task, 'item_index', item_index,
                                                     'status', status, 'result', result) ORDER BY id),
                        '[]')
          FROM ended) AS "ended!",
       (SELECT version FROM attune.definition_version) AS "definitions_version!"
  FROM parent p
