-- Work tables churn: every execution is updated three or four times within milliseconds,
-- and each update leaves a dead row and dead entries in the partial indexes the claims
-- scan. Measured with `attune bench`: after a 20,000-event burst, the scheduler's claim
-- went from ~3 ms to ~14 ms until the table was vacuumed. Vacuum these tables after a
-- fixed number of changes rather than a fraction of their (growing) size, without
-- throttling, and leave room on each page for updated rows.
ALTER TABLE attune.execution SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                                  autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.05,
                                  fillfactor = 80);
ALTER TABLE attune.event SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                              autovacuum_vacuum_cost_delay = 0, fillfactor = 90);
ALTER TABLE attune.enforcement SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                                    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE attune.worker SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 100);
ALTER TABLE attune.timer_state SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
                                    fillfactor = 70);
