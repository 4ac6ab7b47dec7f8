-- Crash safety: every start of a worker is a new row (an incarnation), its liveness is its
-- database session, and every attempt is a row from the moment it starts.
--
-- A worker restarted under the same name (a container's PID 1 with the same hostname, or
-- a wrapped PID) used to revive the dead incarnation's row, so the reaper never saw that
-- incarnation's executions again. Names are now only labels; `instance` identifies an
-- incarnation.
ALTER TABLE attune.worker DROP CONSTRAINT worker_name_key;
CREATE INDEX worker_name ON attune.worker (name);
ALTER TABLE attune.worker ADD COLUMN instance uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE attune.worker ADD CONSTRAINT worker_instance_key UNIQUE (instance);

-- A worker registered with `session_lock` holds, for its whole life, a session-level
-- advisory lock keyed by attune.worker_lock_key(id) on a connection of its own: the lock
-- goes the moment its session ends (the process died, or PostgreSQL ended an idle or
-- unreachable session), and the reaper finds it gone within a second instead of waiting
-- for heartbeats to go stale. Rows without it (workers of earlier versions) are judged by
-- their heartbeat alone.
ALTER TABLE attune.worker ADD COLUMN session_lock boolean NOT NULL DEFAULT false;

-- The lock key: 'ATTW' in the high 32 bits, the worker id in the low ones, so pg_locks
-- shows it as classid = 1095062615, objid = id, objsubid = 1.
CREATE FUNCTION attune.worker_lock_key(worker_id bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (1095062615::bigint << 32) | worker_id $$;

-- Whether worker `worker_id`'s liveness lock is held, by anyone, in this database.
CREATE FUNCTION attune.worker_session_alive(worker_id bigint) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM pg_catalog.pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
               AND l.classid = 1095062615::oid AND l.objid = worker_id::oid AND l.objsubid = 1)
    $$;

-- Attempts: written when the attempt starts (status `running`, its worker, its start; the
-- action's pid once started), closed by the completer with the outcome or by the reaper
-- as `lost`.
ALTER TABLE attune.execution_attempt ADD COLUMN pid integer;
CREATE INDEX execution_attempt_running ON attune.execution_attempt (worker_id) WHERE status = 'running';
