-- A workflow's new task executions (one per array element, ids in array order), already
-- admitted by the engine with the scheduler's rules: `scheduled` for the workers (or
-- `failed`, the reason in $13, which the engine takes in at its next step), each with its
-- task name, with-items position, earliest start (a retry's delay), attempts and timeout
-- (the task's timeout_seconds, else the action's). Their audit entries and their
-- `execution.created` change-log rows.
-- $15, $16: per element, a worker of the engine's own process (id, name) with a free slot
-- kept for that task (crates/core/src/handoff.rs), NULL for none. A scheduled task due now
-- whose worker is active, of an action its claim would take (no concurrency limit, not a
-- with-items parent), is inserted claimed by it — `running`, with the claim's trail too
-- (`execution.status_changed` running after `execution.created`, audit entry
-- `execution.started` by the worker, the attempt's row) — and returned with what running it
-- needs, as the claim returns it (sql/worker/claim.sql): the engine hands it to the lane
-- after its commit. Only those rows are returned, with their element's position.
WITH input AS (
    SELECT r.*,
           -- A task of an action with `with_items` (not itself an item) is a with-items
           -- parent, run by the workflow engine.
           CASE WHEN r.item_index IS NULL AND a.with_items IS NOT NULL THEN 'workflow' ELSE r.runner_type END AS runner,
           CASE WHEN r.status = 'scheduled' AND r.delay <= 0 AND a.id IS NOT NULL AND a.concurrency IS NULL
                     AND (r.item_index IS NOT NULL OR a.with_items IS NULL)
                THEN w.id END AS here
      FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::bytea[],
                  $8::text[], $9::int[], $10::float8[], $11::int[], $12::text[], $13::jsonb[], $14::int[],
                  $15::bigint[], $16::text[])
           WITH ORDINALITY
           AS r(tenant_id, parent_id, action_id, action_ref, runner_type, parameters, secret_params, task, item_index,
                delay, timeout, status, result, max_attempts, worker_id, worker_name, n)
      LEFT JOIN attune.action a ON a.id = r.action_id
      LEFT JOIN attune.worker w ON w.id = r.worker_id AND w.status = 'active'
), created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, parent_id, action_id, action_ref, runner_type, parameters, secret_params,
         workflow_task, item_index, run_after, status, result, max_attempts, timeout_seconds,
         scheduled_at, finished_at, requested_by, worker_id, started_at)
    SELECT r.tenant_id, r.parent_id, r.action_id, r.action_ref, r.runner,
           r.parameters, r.secret_params,
           r.task, r.item_index, clock_timestamp() + make_interval(secs => r.delay),
           CASE WHEN r.here IS NULL THEN r.status ELSE 'running' END, r.result,
           r.max_attempts, r.timeout,
           CASE WHEN r.status = 'scheduled' THEN clock_timestamp() END,
           CASE WHEN r.status = 'failed' THEN clock_timestamp() END,
           (SELECT p.requested_by FROM attune.execution p WHERE p.id = r.parent_id),
           r.here, CASE WHEN r.here IS NOT NULL THEN clock_timestamp() END
      FROM input r
     ORDER BY r.n
    RETURNING e.id, e.tenant_id, e.action_id, e.action_ref, e.runner_type, e.parameters, e.secret_params,
              e.status, e.result, e.attempt, e.timeout_seconds, e.worker_id, e.started_at,
              attune.execution_change(e) AS change
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT c.tenant_id, s.actor_type, s.actor_id, s.action, 'execution', c.id::text, s.data
      FROM created c,
           LATERAL (VALUES (1, 'service', 'executor',
                            'execution.' || CASE WHEN c.status = 'running' THEN 'scheduled' ELSE c.status END,
                            CASE WHEN c.result IS NULL THEN jsonb_build_object('action', c.action_ref)
                                 ELSE jsonb_build_object('action', c.action_ref, 'error', c.result -> 'error') END),
                           (2, 'worker', (SELECT r.worker_name FROM input r WHERE r.here = c.worker_id LIMIT 1),
                            'execution.started', jsonb_build_object('action', c.action_ref, 'attempt', c.attempt)))
                AS s(n, actor_type, actor_id, action, data)
     WHERE s.n = 1 OR c.status = 'running'
     ORDER BY c.id, s.n
), logged AS (
    -- A handed task's `execution.created` carries the row as scheduled: its running
    -- message with those fields set back (made once from the message; see run.sql).
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT c.tenant_id, 'execution', c.id, s.event, s.data
      FROM created c,
           LATERAL (VALUES (1, 'execution.created',
                            CASE WHEN c.status = 'running'
                                 THEN ROW(jsonb_populate_record((c.change).execution, jsonb_build_object(
                                          'status', 'scheduled', 'worker_id', NULL, 'started_at', NULL)),
                                          NULL, NULL, NULL, NULL)::attune.change_data
                                 ELSE c.change END),
                           (2, 'execution.status_changed', c.change)) AS s(n, event, data)
     WHERE s.n = 1 OR c.status = 'running'
     ORDER BY c.id, s.n
), attempts AS (
    INSERT INTO attune.execution_attempt (execution_id, attempt, tenant_id, worker_id, status, started_at)
    SELECT id, attempt, tenant_id, worker_id, 'running', started_at FROM created WHERE status = 'running'
)
SELECT c.n AS "n!", c.id AS "id!", c.tenant_id AS "tenant_id!", c.action_ref AS "action_ref!",
       c.runner_type AS "runner_type!: RunnerType", c.parameters AS "parameters!", c.secret_params AS "secret_params?",
       c.attempt AS "attempt!", c.timeout_seconds AS "timeout_seconds?",
       a.entry_point AS "entry_point?", a.command AS "command?", a.code AS "code?",
       COALESCE(a.secret_params, '{}') AS "secret_names!", COALESCE(a.secrets, '{}') AS "secrets!",
       p.path AS "pack_path?", COALESCE(a.network, true) AS "network!",
       a.http AS "http?", a.container AS "container?", p.ref AS "pack_ref?", p.version AS "pack_version?"
       -- n: the element's position (1-based; ids are drawn in array order).
  FROM (SELECT created.*, row_number() OVER (ORDER BY id) AS n FROM created) c
  LEFT JOIN attune.action a ON a.id = c.action_id
  LEFT JOIN attune.pack p ON p.id = a.pack_id
 WHERE c.status = 'running'
 ORDER BY c.id
