-- Moves a batch of requested executions on: `scheduled` (valid parameters, defaults
-- applied) or `failed` (invalid parameters, with the reason in result.error).
UPDATE attune.execution e
   SET status          = r.status,
       parameters      = r.parameters,
       secret_params   = r.secret_params,
       result          = r.result,
       max_attempts    = r.max_attempts,
       timeout_seconds = r.timeout_seconds,
       scheduled_at    = CASE WHEN r.status = 'scheduled' THEN clock_timestamp() END,
       finished_at     = CASE WHEN r.status = 'failed' THEN clock_timestamp() END,
       updated_at      = clock_timestamp()
  FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::bytea[], $5::jsonb[], $6::int[], $7::int[])
       AS r(id, status, parameters, secret_params, result, max_attempts, timeout_seconds)
 WHERE e.id = r.id
