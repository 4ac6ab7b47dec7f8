-- Rule hit rate: of the events of a rule's trigger that the rule engine has processed, how
-- many the rule enforced (its criteria matched). Unprocessed events are left out: they
-- have not been matched yet. A system rule (tenant_id NULL) gets a row per tenant whose
-- events it saw. Rolled-up events and enforcements are read from their rollups, the
-- others from the tables. Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.rule_hit_rate WITH (security_invoker = true) AS
WITH events AS (
    SELECT x.tenant_id, x.trigger_id, sum(x.n)::bigint AS events
      FROM (SELECT r.tenant_id, r.trigger_id, r.events AS n FROM attune.event_rollup r
            UNION ALL
            SELECT ev.tenant_id, ev.trigger_id, 1 FROM attune.event_unrolled() ev
             WHERE ev.processed_at IS NOT NULL AND ev.trigger_id IS NOT NULL) x
     GROUP BY x.tenant_id, x.trigger_id
), enforcements AS (
    SELECT x.tenant_id, x.rule_id, sum(x.n)::bigint AS enforcements
      FROM (SELECT r.tenant_id, r.rule_id, r.enforcements AS n FROM attune.enforcement_rollup r
            UNION ALL
            SELECT enf.tenant_id, enf.rule_id, 1 FROM attune.enforcement_unrolled() enf
             WHERE enf.rule_id IS NOT NULL) x
     GROUP BY x.tenant_id, x.rule_id
)
SELECT events.tenant_id,
       r.ref AS rule_ref,
       events.events,
       coalesce(enforcements.enforcements, 0) AS enforcements,
       round(coalesce(enforcements.enforcements, 0)::numeric / events.events, 4) AS hit_rate
  FROM attune.rule r
  JOIN events ON events.trigger_id = r.trigger_id
             AND (r.tenant_id IS NULL OR r.tenant_id = events.tenant_id)
  LEFT JOIN enforcements ON enforcements.rule_id = r.id AND enforcements.tenant_id IS NOT DISTINCT FROM events.tenant_id;

COMMENT ON VIEW attune_reporting.rule_hit_rate IS
    'Per tenant and rule: processed events of the rule''s trigger, the enforcements the rule made of them, and the ratio.';
COMMENT ON COLUMN attune_reporting.rule_hit_rate.tenant_id IS 'The tenant the events belong to.';
COMMENT ON COLUMN attune_reporting.rule_hit_rate.rule_ref IS 'The rule, pack.name.';
COMMENT ON COLUMN attune_reporting.rule_hit_rate.events IS 'Processed events of the rule''s trigger.';
COMMENT ON COLUMN attune_reporting.rule_hit_rate.enforcements IS 'Enforcements the rule made (its criteria matched).';
COMMENT ON COLUMN attune_reporting.rule_hit_rate.hit_rate IS 'enforcements / events, 0 to 1, four decimals.';
