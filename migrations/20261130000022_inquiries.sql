-- Inquiries (issue 10, part 2): questions for a human inside an execution.
--
-- * An inquiry execution (runner `inquiry`, `core.ask`) is run by the executor: it opens
--   the inquiry row and waits `paused`; an answer (API) or the expiry (executor) ends it.
--   The inquiry row is its own timer: `expires_at` with the partial index
--   inquiry_pending_expiry, so a restart loses no expiry.
-- * `roles` / `users`: who may answer (empty: anyone allowed to respond).
-- * `canceled`: the execution was canceled while the inquiry waited; nobody can answer it.
-- * A workflow is `paused` while one of its children is (an inquiry, or a child workflow
--   that waits on one): the partial index below finds paused children by parent.
ALTER TABLE attune.inquiry
    ADD COLUMN roles text[] NOT NULL DEFAULT '{}',
    ADD COLUMN users text[] NOT NULL DEFAULT '{}',
    DROP CONSTRAINT inquiry_status_check,
    ADD CONSTRAINT inquiry_status_check CHECK (status IN ('pending', 'responded', 'expired', 'canceled'));

CREATE INDEX execution_inquiry_scheduled ON attune.execution (id)
    WHERE status = 'scheduled' AND runner_type = 'inquiry';
CREATE INDEX execution_inquiry_canceling ON attune.execution (id)
    WHERE status = 'canceling' AND runner_type = 'inquiry';
CREATE INDEX execution_paused_by_parent ON attune.execution (parent_id)
    WHERE status = 'paused' AND parent_id IS NOT NULL;
CREATE INDEX execution_workflow_paused ON attune.execution (id)
    WHERE status = 'paused' AND runner_type = 'workflow';

-- The change-log message of an inquiry: its row plus `inquiry_id` (as for the others).
CREATE FUNCTION attune.inquiry_change(i attune.inquiry) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_jsonb(i) || jsonb_build_object('inquiry_id', i.id)
$$;
GRANT EXECUTE ON FUNCTION attune.inquiry_change(attune.inquiry) TO attune_api;
