-- The reporting rollup's stop (migration 20261130000043_reporting_rollups) waited for the
-- snapshot's xmax to pass before moving its cursor over ids taken from the sequence. But
-- PostgreSQL's snapshot xmax is the latest *completed* transaction id + 1: a writer that
-- got its transaction id after the last commit has one at or above it while it still
-- runs, so the cursor could pass a row of a transaction still in flight and the rollup
-- never count it (the change log's reader had the same flaw; attune_core::change_log).
-- The bound is now a transaction id assigned after the sequence's position was noted: the
-- rollup step's own (its first statement locks the cursor row, which assigns it), higher
-- than that of every writer that took an id below the stop. Only that line changes.

CREATE OR REPLACE FUNCTION attune.history_rollup(family text, batch integer,
                                      OUT counted bigint, OUT pended bigint, OUT caught_up boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    c attune.history_rollup_cursor;
    hi bigint;
    seq_last bigint;
    seq_called boolean;
BEGIN
    counted := 0;
    pended := 0;
    caught_up := true;
    SELECT * INTO c FROM attune.history_rollup_cursor r WHERE r.family = history_rollup.family FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rollup for family %', family USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A stop noted in another cluster (a restored dump: transaction ids start over) or
    -- from a clock since set back would never be reached: start the stop over.
    IF c.next_xmax > pg_snapshot_xmax(pg_current_snapshot())::text::bigint OR c.next_at > clock_timestamp() THEN
        c.next_below := NULL;
        c.next_xmax := NULL;
    END IF;
    IF c.next_xmax IS NOT NULL
       AND pg_snapshot_xmin(pg_current_snapshot())::text::bigint >= c.next_xmax THEN
        EXECUTE format('SELECT id FROM attune.%I WHERE id >= $1 AND id < $2 ORDER BY id OFFSET $3 LIMIT 1', family)
           INTO hi USING c.below, c.next_below, greatest(batch, 1);
        SELECT * INTO counted, pended FROM attune.history_rollup_range(family, c.below, coalesce(hi, c.next_below));
        IF hi IS NOT NULL THEN
            UPDATE attune.history_rollup_cursor r SET below = hi WHERE r.family = c.family;
            caught_up := false;
            RETURN;
        END IF;
        c.below := c.next_below;
        c.next_below := NULL;
        c.next_xmax := NULL;
    END IF;
    IF c.next_below IS NULL THEN
        EXECUTE format('SELECT last_value, is_called FROM %s', pg_get_serial_sequence('attune.' || family, 'id'))
           INTO seq_last, seq_called;
        c.next_below := greatest(c.below, CASE WHEN seq_called THEN seq_last + 1 ELSE seq_last END);
        c.next_at := clock_timestamp();
    ELSIF c.next_xmax IS NULL AND clock_timestamp() >= c.next_at + interval '100 milliseconds' THEN
        -- This transaction's id (assigned by the lock above): see the top of this file.
        c.next_xmax := pg_current_xact_id()::text::bigint;
    END IF;
    UPDATE attune.history_rollup_cursor r
       SET below = c.below, next_below = c.next_below, next_at = c.next_at, next_xmax = c.next_xmax
     WHERE r.family = c.family;
END $$;
