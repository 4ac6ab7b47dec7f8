-- The workflow engine's look at the start of each round: one round trip, no lock.
-- `start`: whether a workflow waits to be started (partial index
-- execution_workflow_scheduled): an idle start round costs no claim transaction.
-- `pending`: workflows with work to do, at most $1 of each kind (each is then locked and
-- re-checked alone): children that ended and are not yet consumed (partial index
-- execution_unconsumed), with-items batches still to create (workflow_state_wants_step),
-- cancel requests (execution_workflow_canceling), running (or paused) workflows past their
-- action's timeout_seconds that are not stopping yet (execution_workflow_running), and
-- workflows whose status no longer matches their children's: running with a paused child,
-- or paused with none (execution_paused_by_parent, execution_workflow_paused).
SELECT EXISTS (SELECT 1 FROM attune.execution
                WHERE status = 'scheduled' AND runner_type = 'workflow' AND run_after <= now()) AS "start!",
       ARRAY(SELECT id FROM (
    (SELECT DISTINCT parent_id AS id FROM attune.execution
      WHERE parent_id IS NOT NULL AND consumed_at IS NULL
        AND status IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')
      LIMIT $1)
    UNION
    (SELECT execution_id FROM attune.workflow_state WHERE wants_step LIMIT $1)
    UNION
    (SELECT id FROM attune.execution WHERE status = 'canceling' AND runner_type = 'workflow' LIMIT $1)
    UNION
    (SELECT e.id FROM attune.execution e
       JOIN attune.action a ON a.id = e.action_id
       JOIN attune.workflow_state ws ON ws.execution_id = e.id
      WHERE e.status IN ('running', 'paused') AND e.runner_type = 'workflow' AND a.timeout_seconds IS NOT NULL
        AND e.started_at + make_interval(secs => a.timeout_seconds) < now() AND ws.abort_error IS NULL
      LIMIT $1)
    UNION
    (SELECT DISTINCT c.parent_id FROM attune.execution c
       JOIN attune.execution p ON p.id = c.parent_id
      WHERE c.status = 'paused' AND c.parent_id IS NOT NULL AND p.status = 'running'
      LIMIT $1)
    UNION
    (SELECT p.id FROM attune.execution p
      WHERE p.status = 'paused' AND p.runner_type = 'workflow'
        AND NOT EXISTS (SELECT 1 FROM attune.execution c WHERE c.parent_id = p.id AND c.status = 'paused')
      LIMIT $1)
       ) p ORDER BY id) AS "pending!"
