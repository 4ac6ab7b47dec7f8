-- Takes in the children of workflow $1 that ended and were not consumed yet (the caller
-- holds the parent's lock), in the order they were created.
UPDATE attune.execution
   SET consumed_at = clock_timestamp()
 WHERE parent_id = $1 AND consumed_at IS NULL
   AND status IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')
RETURNING id, workflow_task, item_index, status AS "status: ExecutionStatus", result
