-- The tenant's ($1) executions, newest first: one by id ($2), or a page filtered by action
-- ref ($3), status ($4), parent ($5) and rule ref ($6), $7 rows from $8. The captured
-- output is read only when $9 (one execution's view); lists leave it out.
SELECT e.id, e.action_ref, e.status AS "status: ExecutionStatus", e.parameters, e.result, o.stdout AS "stdout?",
       o.stderr AS "stderr?", e.parent_id, e.enforcement_id, e.rule_ref, e.attempt, e.max_attempts, e.created_at,
       e.scheduled_at, e.started_at, e.finished_at, w.name AS "worker?", e.workflow_task, e.item_index
  FROM attune.execution e
  LEFT JOIN attune.worker w ON w.id = e.worker_id
  LEFT JOIN attune.execution_output o ON $9::bool AND o.execution_id = e.id
 WHERE e.tenant_id = $1 AND ($2::bigint IS NULL OR e.id = $2)
   AND ($3::text IS NULL OR e.action_ref = $3) AND ($4::text IS NULL OR e.status = $4)
   AND ($5::bigint IS NULL OR e.parent_id = $5) AND ($6::text IS NULL OR e.rule_ref = $6)
 ORDER BY e.id DESC
 LIMIT $7 OFFSET $8
