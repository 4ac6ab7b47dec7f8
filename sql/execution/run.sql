-- A manual run (`POST /api/v1/executions`), admitted by the API with the scheduler's rules,
-- in one statement: the execution inserted `scheduled` for the workers (its action $2 = $3,
-- runner $4; parameters admitted, secret ones masked in $5 and sealed in $6; requested by
-- identity $7, NULL for an execution's own token; $11 attempts, $12 s timeout), with the
-- same trail as a run the scheduler admits: change-log rows `execution.created` (the row as
-- requested) then `execution.status_changed` (scheduled), audit entries
-- `execution.requested` (actor type $8, id $9, login $10) then `execution.scheduled`
-- (actor `service` `executor`). One row written once, where an insert `requested` and an
-- update to `scheduled` wrote it twice (and planned a second statement per run).
-- $13: the definitions' version the action was read at, when it was read before this
-- transaction (the API's cache of actions, crates/api/src/action_cache.rs): nothing is
-- inserted, and no row returned, if an action or a rule changed since. NULL: no check.
-- $14, $15: a worker of the API's own process (id, name) that has a free slot kept for this
-- run (crates/core/src/handoff.rs), NULL for none. While that worker is active and the
-- action is one its claim would take (no concurrency limit, no with_items), the execution
-- is inserted claimed by it — `running`, with the claim's trail too (change-log row
-- `execution.status_changed` (running), audit entry `execution.started` (actor `worker`
-- $15), the attempt's row) — and the row returns what running it needs, as the claim's do
-- (sql/worker/claim.sql): `handed`. Otherwise it is inserted `scheduled` as above.
WITH now AS (
    SELECT clock_timestamp() AS at
), created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, action_id, action_ref, runner_type, parameters, secret_params, requested_by,
         max_attempts, timeout_seconds, status, scheduled_at, worker_id, started_at, updated_at)
    SELECT $1, $2, $3,
           -- An action with `with_items` runs as a with-items parent, by the workflow engine.
           CASE WHEN a.with_items IS NOT NULL THEN 'workflow' ELSE $4 END,
           $5, $6, $7, $11, $12,
           CASE WHEN here.id IS NULL THEN 'scheduled' ELSE 'running' END,
           now.at, here.id, CASE WHEN here.id IS NOT NULL THEN now.at END, now.at
      FROM now
      LEFT JOIN attune.action a ON a.id = $2
      LEFT JOIN attune.worker here
        ON here.id = $14 AND here.status = 'active'
       AND a.id IS NOT NULL AND a.concurrency IS NULL AND a.with_items IS NULL
     WHERE $13::bigint IS NULL OR $13 = (SELECT version FROM attune.definition_version)
    RETURNING e.id, e.tenant_id, e.action_id, e.action_ref, e.runner_type, e.parameters, e.secret_params,
              e.status, e.worker_id, e.started_at, e.attempt, e.max_attempts, e.timeout_seconds, e.created_at,
              attune.execution_change(e) AS change
), logged AS (
    -- In this order (the log's ids are drawn as the rows are inserted): created, scheduled,
    -- then running when handed. `execution.created` carries the row as requested and
    -- `execution.status_changed` (scheduled) the row as scheduled when it was handed: the
    -- last message with those fields set back. Made from the message, not by calling
    -- execution_change on a changed row: the planner inlines that function, so its
    -- argument would be computed again for each of the message's fields.
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT c.tenant_id, 'execution', c.id, s.event, s.data
      FROM created c,
           LATERAL (VALUES (1, 'execution.created',
                            ROW(jsonb_populate_record((c.change).execution, jsonb_build_object(
                                    'status', 'requested', 'scheduled_at', NULL, 'updated_at', c.created_at,
                                    'worker_id', NULL, 'started_at', NULL)),
                                NULL, NULL, NULL, NULL)::attune.change_data),
                           (2, 'execution.status_changed',
                            CASE WHEN c.status = 'running'
                                 THEN ROW(jsonb_populate_record((c.change).execution, jsonb_build_object(
                                          'status', 'scheduled', 'worker_id', NULL, 'started_at', NULL)),
                                          NULL, NULL, NULL, NULL)::attune.change_data
                                 ELSE c.change END),
                           (3, 'execution.status_changed', c.change)) AS s(n, event, data)
     WHERE s.n < 3 OR c.status = 'running'
     ORDER BY s.n
), attempts AS (
    INSERT INTO attune.execution_attempt (execution_id, attempt, tenant_id, worker_id, status, started_at)
    SELECT id, attempt, tenant_id, worker_id, 'running', started_at FROM created WHERE status = 'running'
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, actor_login, action, entity_type, entity_id, data)
    SELECT c.tenant_id, s.actor_type, s.actor_id, s.actor_login, s.action, 'execution', c.id::text,
           CASE WHEN s.n = 3 THEN jsonb_build_object('action', c.action_ref, 'attempt', c.attempt)
                ELSE jsonb_build_object('action', c.action_ref) END
      FROM created c,
           LATERAL (VALUES (1, $8, $9, $10, 'execution.requested'),
                           (2, 'service', 'executor', NULL, 'execution.scheduled'),
                           (3, 'worker', $15, NULL, 'execution.started'))
                AS s(n, actor_type, actor_id, actor_login, action)
     WHERE s.n < 3 OR c.status = 'running'
     ORDER BY s.n
)
SELECT c.id AS "id!", c.parameters AS "parameters!", c.attempt AS "attempt!", c.max_attempts AS "max_attempts!",
       c.created_at AS "created_at!", c.status = 'running' AS "handed!",
       -- What running it needs (used when handed), as the claim returns it.
       c.tenant_id AS "tenant_id!", c.action_ref AS "action_ref!", c.runner_type AS "runner_type!: RunnerType",
       c.secret_params AS "secret_params?", c.timeout_seconds AS "timeout_seconds?",
       a.entry_point AS "entry_point?", a.command AS "command?", a.code AS "code?",
       COALESCE(a.secret_params, '{}') AS "secret_names!", COALESCE(a.secrets, '{}') AS "secrets!",
       p.path AS "pack_path?", COALESCE(a.network, true) AS "network!",
       a.http AS "http?", a.container AS "container?", p.ref AS "pack_ref?", p.version AS "pack_version?"
  FROM created c
  LEFT JOIN attune.action a ON a.id = c.action_id
  LEFT JOIN attune.pack p ON p.id = a.pack_id
