-- Attune's core model: every table of the architecture blueprint, in schema `attune`.
-- Forward-only: later changes add migrations, never edit this one.

CREATE SCHEMA IF NOT EXISTS attune;

-- ---------------------------------------------------------------------------
-- Who: tenants, identities, refresh tokens
-- ---------------------------------------------------------------------------
CREATE TABLE attune.tenant (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 128),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attune.identity (
    id            bigserial PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    login         text NOT NULL UNIQUE CHECK (length(login) BETWEEN 1 AND 128),
    display_name  text,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'editor', 'executor', 'viewer')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_tenant ON attune.identity (tenant_id);

-- Refresh tokens are stored as SHA-256 hashes; rotation revokes the old row.
CREATE TABLE attune.refresh_token (
    id           bigserial PRIMARY KEY,
    identity_id  bigint NOT NULL REFERENCES attune.identity (id) ON DELETE CASCADE,
    token_hash   text NOT NULL UNIQUE,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    replaced_by  bigint REFERENCES attune.refresh_token (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_token_identity ON attune.refresh_token (identity_id);

-- ---------------------------------------------------------------------------
-- What: packs and their definitions. tenant_id NULL = system pack, visible to all.
-- Refs are unique per tenant (system packs share the "tenant 0" slot).
-- ---------------------------------------------------------------------------
CREATE TABLE attune.pack (
    id           bigserial PRIMARY KEY,
    tenant_id    bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    ref          text NOT NULL CHECK (ref ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    label        text,
    version      text NOT NULL DEFAULT '0.0.0',
    description  text,
    path         text,            -- directory the pack was loaded from; NULL for API-registered packs
    content_hash text,            -- hash of the directory's files at the last (re)load
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX pack_ref_per_tenant ON attune.pack (COALESCE(tenant_id, 0), ref);

CREATE TABLE attune.action (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    pack_id         bigint NOT NULL REFERENCES attune.pack (id) ON DELETE CASCADE,
    ref             text NOT NULL,
    description     text,
    runner_type     text NOT NULL CHECK (runner_type IN
                        ('builtin', 'shell', 'python', 'node', 'http', 'container', 'workflow', 'inquiry')),
    entry_point     text,
    command         text,
    code            text,
    parameters      jsonb NOT NULL DEFAULT '{}',   -- as the author wrote it (flat form or JSON Schema)
    param_schema    jsonb NOT NULL DEFAULT '{"type":"object","properties":{}}', -- normalised JSON Schema
    secret_params   text[] NOT NULL DEFAULT '{}',  -- parameters masked in anything stored
    output_schema   jsonb,
    timeout_seconds integer CHECK (timeout_seconds > 0),
    retry           jsonb,
    concurrency     integer CHECK (concurrency > 0),
    secrets         text[] NOT NULL DEFAULT '{}',  -- datastore keys handed to the action on stdin
    workflow        jsonb,
    http            jsonb,
    container       jsonb,
    with_items      text,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX action_ref_per_tenant ON attune.action (COALESCE(tenant_id, 0), ref);
CREATE INDEX action_pack ON attune.action (pack_id);

CREATE TABLE attune.trigger (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    pack_id         bigint NOT NULL REFERENCES attune.pack (id) ON DELETE CASCADE,
    ref             text NOT NULL,
    description     text,
    type            text NOT NULL CHECK (type IN
                        ('webhook', 'timer.interval', 'timer.cron', 'timer.date', 'custom')),
    parameters      jsonb NOT NULL DEFAULT '{}',
    payload_schema  jsonb,
    webhook_key     text UNIQUE,          -- unguessable key inside webhook_url
    webhook_secret  text,                 -- HMAC secret (webhook triggers only)
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (webhook_key IS NULL OR type = 'webhook')
);
CREATE UNIQUE INDEX trigger_ref_per_tenant ON attune.trigger (COALESCE(tenant_id, 0), ref);
CREATE INDEX trigger_pack ON attune.trigger (pack_id);

CREATE TABLE attune.sensor (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    pack_id         bigint NOT NULL REFERENCES attune.pack (id) ON DELETE CASCADE,
    ref             text NOT NULL,
    description     text,
    runner_type     text NOT NULL CHECK (runner_type IN ('shell', 'python', 'node')),
    entry_point     text NOT NULL,
    poll_interval   integer NOT NULL DEFAULT 60 CHECK (poll_interval > 0),
    trigger_id      bigint NOT NULL REFERENCES attune.trigger (id) ON DELETE CASCADE,
    config          jsonb NOT NULL DEFAULT '{}',
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sensor_ref_per_tenant ON attune.sensor (COALESCE(tenant_id, 0), ref);
CREATE INDEX sensor_pack ON attune.sensor (pack_id);

CREATE TABLE attune.rule (
    id                bigserial PRIMARY KEY,
    tenant_id         bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    pack_id           bigint NOT NULL REFERENCES attune.pack (id) ON DELETE CASCADE,
    ref               text NOT NULL,
    description       text,
    trigger_id        bigint NOT NULL REFERENCES attune.trigger (id),
    action_id         bigint NOT NULL REFERENCES attune.action (id),
    criteria          text,               -- minijinja expression over trigger.data; NULL = always
    action_params     jsonb NOT NULL DEFAULT '{}',
    enabled           boolean NOT NULL DEFAULT true,
    notify_on_trigger boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX rule_ref_per_tenant ON attune.rule (COALESCE(tenant_id, 0), ref);
CREATE INDEX rule_trigger_enabled ON attune.rule (trigger_id) WHERE enabled;
CREATE INDEX rule_action ON attune.rule (action_id);
CREATE INDEX rule_pack ON attune.rule (pack_id);

-- ---------------------------------------------------------------------------
-- Work tables. Each claim query is backed by a partial index in its ORDER BY.
-- ---------------------------------------------------------------------------

-- A trigger fired. processed_at IS NULL = not yet matched against rules.
CREATE TABLE attune.event (
    id            bigserial PRIMARY KEY,
    tenant_id     bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    trigger_id    bigint REFERENCES attune.trigger (id) ON DELETE SET NULL,
    trigger_ref   text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    source        text NOT NULL DEFAULT 'api' CHECK (source IN ('webhook', 'timer', 'sensor', 'amqp', 'api')),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    processed_at  timestamptz
);
-- The rule engine's claim: WHERE processed_at IS NULL ORDER BY id
CREATE INDEX event_unprocessed ON attune.event (id) WHERE processed_at IS NULL;
CREATE INDEX event_trigger ON attune.event (trigger_id, id DESC);
CREATE INDEX event_tenant ON attune.event (tenant_id, id DESC);

-- A rule matched an event: one row per (rule, event), written in the same
-- transaction that marks the event processed.
CREATE TABLE attune.enforcement (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    rule_id     bigint REFERENCES attune.rule (id) ON DELETE SET NULL,
    rule_ref    text NOT NULL,
    event_id    bigint NOT NULL REFERENCES attune.event (id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'processed', 'failed')),
    error       text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (rule_id, event_id)
);
CREATE INDEX enforcement_event ON attune.enforcement (event_id);
CREATE INDEX enforcement_tenant ON attune.enforcement (tenant_id, id DESC);

CREATE TABLE attune.worker (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,       -- host/pid/n, shown as an execution's "worker"
    host          text NOT NULL,
    pid           integer NOT NULL,
    runtimes      text[] NOT NULL DEFAULT '{}',
    capacity      integer NOT NULL CHECK (capacity > 0),
    running       integer NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'stopped', 'lost')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);
CREATE INDEX worker_active_heartbeat ON attune.worker (heartbeat_at) WHERE status IN ('active', 'draining');

-- The unit of work. Narrow and hot: large stdout/stderr live in execution_output.
CREATE TABLE attune.execution (
    id               bigserial PRIMARY KEY,
    tenant_id        bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    action_id        bigint REFERENCES attune.action (id) ON DELETE SET NULL,
    action_ref       text NOT NULL,
    runner_type      text NOT NULL,
    status           text NOT NULL DEFAULT 'requested' CHECK (status IN
                         ('requested', 'scheduled', 'running', 'paused', 'canceling',
                          'succeeded', 'failed', 'canceled', 'succeeded_with_errors')),
    parameters       jsonb NOT NULL DEFAULT '{}',   -- secret parameters masked
    result           jsonb,                          -- exit_code, output, error, failure_reason, truncated
    parent_id        bigint REFERENCES attune.execution (id) ON DELETE CASCADE,
    workflow_task    text,                           -- task name inside the parent workflow
    item_index       integer,                        -- with-items position inside the parent
    enforcement_id   bigint REFERENCES attune.enforcement (id) ON DELETE SET NULL,
    rule_id          bigint REFERENCES attune.rule (id) ON DELETE SET NULL,
    rule_ref         text,
    requested_by     bigint REFERENCES attune.identity (id) ON DELETE SET NULL,
    priority         integer NOT NULL DEFAULT 0,
    run_after        timestamptz NOT NULL DEFAULT now(),
    attempt          integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    max_attempts     integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    timeout_seconds  integer CHECK (timeout_seconds > 0),
    worker_id        bigint REFERENCES attune.worker (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    scheduled_at     timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Scheduler's claim: requested executions in arrival order.
CREATE INDEX execution_requested ON attune.execution (id) WHERE status = 'requested';
-- Worker's claim: exactly the ORDER BY of the claim statement.
CREATE INDEX execution_ready ON attune.execution (priority DESC, run_after, id) WHERE status = 'scheduled';
-- Reaper and cancellation: what a worker holds.
CREATE INDEX execution_held ON attune.execution (worker_id) WHERE status IN ('running', 'canceling');
CREATE INDEX execution_tenant ON attune.execution (tenant_id, id DESC);
CREATE INDEX execution_parent ON attune.execution (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX execution_enforcement ON attune.execution (enforcement_id) WHERE enforcement_id IS NOT NULL;
CREATE INDEX execution_action ON attune.execution (action_id, status);

-- Captured output, written once at completion (kept off the hot execution row).
CREATE TABLE attune.execution_output (
    execution_id  bigint PRIMARY KEY REFERENCES attune.execution (id) ON DELETE CASCADE,
    stdout        text NOT NULL DEFAULT '',
    stderr        text NOT NULL DEFAULT '',
    truncated     boolean NOT NULL DEFAULT false
);

-- One row per attempt (retries).
CREATE TABLE attune.execution_attempt (
    id            bigserial PRIMARY KEY,
    execution_id  bigint NOT NULL REFERENCES attune.execution (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    worker_id     bigint REFERENCES attune.worker (id) ON DELETE SET NULL,
    status        text NOT NULL,
    exit_code     integer,
    error         text,
    started_at    timestamptz,
    finished_at   timestamptz,
    UNIQUE (execution_id, attempt)
);

-- Per workflow execution: task states, published variables, counters.
CREATE TABLE attune.workflow_state (
    execution_id  bigint PRIMARY KEY REFERENCES attune.execution (id) ON DELETE CASCADE,
    definition    jsonb NOT NULL,
    tasks         jsonb NOT NULL DEFAULT '{}',
    variables     jsonb NOT NULL DEFAULT '{}',
    failed_tasks  integer NOT NULL DEFAULT 0,
    version       bigint NOT NULL DEFAULT 0,     -- bumped on every change (optimistic checks)
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attune.inquiry (
    id                bigserial PRIMARY KEY,
    tenant_id         bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    execution_id      bigint NOT NULL UNIQUE REFERENCES attune.execution (id) ON DELETE CASCADE,
    prompt            text NOT NULL,
    schema            jsonb NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'responded', 'expired')),
    response          jsonb,
    default_response  jsonb,
    expires_at        timestamptz,
    responded_by      bigint REFERENCES attune.identity (id) ON DELETE SET NULL,
    responded_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inquiry_pending_expiry ON attune.inquiry (expires_at) WHERE status = 'pending';
CREATE INDEX inquiry_tenant ON attune.inquiry (tenant_id, id DESC);

-- Key/value store. Encrypted values hold AES-256-GCM ciphertext only; the key is never in the database.
CREATE TABLE attune.datastore_item (
    id           bigserial PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    scope        text NOT NULL DEFAULT 'tenant' CHECK (scope IN ('tenant', 'user')),
    owner_id     bigint REFERENCES attune.identity (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 512),
    value        jsonb,
    ciphertext   bytea,
    encrypted    boolean NOT NULL DEFAULT false,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'user') = (owner_id IS NOT NULL)),
    CHECK (CASE WHEN encrypted THEN ciphertext IS NOT NULL AND value IS NULL
                ELSE ciphertext IS NULL END)
);
CREATE UNIQUE INDEX datastore_item_key ON attune.datastore_item (tenant_id, scope, COALESCE(owner_id, 0), key);
CREATE INDEX datastore_item_expiry ON attune.datastore_item (expires_at) WHERE expires_at IS NOT NULL;

-- Per timer trigger: the next tick, claimed with SKIP LOCKED so each tick fires once.
-- next_fire_at NULL = not scheduled (date timer done, or no enabled rule).
CREATE TABLE attune.timer_state (
    trigger_id     bigint PRIMARY KEY REFERENCES attune.trigger (id) ON DELETE CASCADE,
    next_fire_at   timestamptz,
    seq            bigint NOT NULL DEFAULT 0,
    last_fired_at  timestamptz,
    done           boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timer_state_due ON attune.timer_state (next_fire_at) WHERE next_fire_at IS NOT NULL;

-- Custom sensor leases: one running process per sensor across all replicas.
CREATE TABLE attune.sensor_lease (
    sensor_id     bigint PRIMARY KEY REFERENCES attune.sensor (id) ON DELETE CASCADE,
    holder        text NOT NULL,
    expires_at    timestamptz NOT NULL
);

-- ---------------------------------------------------------------------------
-- Out: the change log (feeds notifier and bridge) and the audit log.
-- ---------------------------------------------------------------------------
CREATE TABLE attune.change_log (
    id           bigserial PRIMARY KEY,
    tenant_id    bigint,
    entity_type  text NOT NULL,
    entity_id    bigint NOT NULL,
    event        text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}',
    -- Writer's transaction id: readers stop below pg_snapshot_xmin so rows committed
    -- out of id order are never skipped.
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX change_log_tenant ON attune.change_log (tenant_id, id);

-- Cursors of change-log consumers that must survive restarts (the bridge).
CREATE TABLE attune.consumer_cursor (
    name        text PRIMARY KEY,
    last_id     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attune.audit_log (
    id           bigserial PRIMARY KEY,
    timestamp    timestamptz NOT NULL DEFAULT clock_timestamp(),
    tenant_id    bigint,
    actor_type   text NOT NULL CHECK (actor_type IN ('user', 'service', 'worker')),
    actor_id     text,
    actor_login  text,
    action       text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    text,
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_entity ON attune.audit_log (entity_type, entity_id, id);
CREATE INDEX audit_log_tenant ON attune.audit_log (tenant_id, id DESC);

CREATE FUNCTION attune.audit_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON attune.audit_log
    FOR EACH ROW EXECUTE FUNCTION attune.audit_log_immutable();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON attune.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION attune.audit_log_immutable();

-- ---------------------------------------------------------------------------
-- Wake-up hints. One NOTIFY per statement, never per row: a batch insert of
-- 500 events wakes the rule engine once. Consumers also poll, so a lost hint
-- only costs latency.
-- ---------------------------------------------------------------------------
CREATE FUNCTION attune.notify_channel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END $$;

CREATE TRIGGER event_inserted AFTER INSERT ON attune.event
    FOR EACH STATEMENT EXECUTE FUNCTION attune.notify_channel('attune_event');
CREATE TRIGGER rule_changed AFTER INSERT OR UPDATE OR DELETE ON attune.rule
    FOR EACH STATEMENT EXECUTE FUNCTION attune.notify_channel('attune_rule');
CREATE TRIGGER timer_changed AFTER INSERT OR UPDATE OR DELETE ON attune.trigger
    FOR EACH STATEMENT EXECUTE FUNCTION attune.notify_channel('attune_timer');
