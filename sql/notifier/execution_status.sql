-- The status of execution $1 of tenant $2. A socket opened with an execution's own token
-- (`context.api_token`) is served only while that execution runs, as the API serves it.
SELECT status AS "status!: ExecutionStatus"
  FROM attune.execution
 WHERE id = $1 AND tenant_id = $2
