-- A timer is re-armed only when its schedule changes (type or parameters), not on any
-- update of its trigger row (a new description must not fire a done date timer again).
ALTER TABLE attune.timer_state ADD COLUMN schedule_hash text;
