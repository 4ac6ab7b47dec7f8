-- One step of the reporting rollup of a family ($1: execution, event or enforcement), at
-- most $2 rows: counts the finished rows below the family's next settled id into the
-- rollups, lists the unfinished ones as pending, and counts the pending ones that have
-- finished since (`attune.history_rollup`, migration 20261130000043_reporting_rollups:
-- the owner's function, callable by the service role). caught_up: nothing left for now.
SELECT counted AS "counted!", pended AS "pended!", caught_up AS "caught_up!"
  FROM attune.history_rollup($1, $2)
