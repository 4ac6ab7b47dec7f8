-- Locks one workflow execution for a step (another executor stepping it: skipped), with
-- its state. Every change to a workflow happens under this lock, so two child
-- completions arriving together are taken in one after the other. `timeout_seconds` is
-- set when the workflow has run longer than its action's timeout.
SELECT e.id, e.tenant_id, e.status AS "status: ExecutionStatus", e.parameters, e.secret_params,
       ws.definition AS "definition?", ws.tasks AS "tasks?", ws.variables AS "variables?",
       ws.failed_tasks AS "failed_tasks?", ws.depth AS "depth?", ws.active AS "active?",
       ws.abort_error, ws.items AS "items?",
       CASE WHEN e.status IN ('running', 'paused') AND e.started_at + make_interval(secs => a.timeout_seconds) < now()
            THEN a.timeout_seconds END AS timed_out
  FROM attune.execution e
  LEFT JOIN attune.workflow_state ws ON ws.execution_id = e.id
  LEFT JOIN attune.action a ON a.id = e.action_id
 WHERE e.id = $1
   FOR UPDATE OF e SKIP LOCKED
