-- Every descendant of execution $2 in tenant $1 (workflow tasks, their tasks, with-items
-- items: `GET /api/v1/executions/{id}/children?depth=all`), oldest first, $3 rows from $4,
-- each with its depth below $2 and the total count. Nesting is bounded by the workflow
-- depth limit; the recursion stops at 50 levels whatever the data.
WITH RECURSIVE tree AS (
    SELECT id, 1 AS depth FROM attune.execution WHERE parent_id = $2 AND tenant_id = $1
    UNION ALL
    SELECT c.id, t.depth + 1 FROM attune.execution c JOIN tree t ON c.parent_id = t.id WHERE t.depth < 50
)
SELECT e.id, e.action_ref, e.status AS "status: ExecutionStatus", e.parameters, e.result, e.parent_id,
       e.enforcement_id, e.rule_ref, e.attempt, e.max_attempts, e.created_at, e.scheduled_at, e.started_at,
       e.finished_at, w.name AS "worker?", e.workflow_task, e.item_index, tree.depth AS "depth!",
       count(*) OVER () AS "total!"
  FROM tree
  JOIN attune.execution e ON e.id = tree.id
  LEFT JOIN attune.worker w ON w.id = e.worker_id
 ORDER BY e.id
 LIMIT $3 OFFSET $4
