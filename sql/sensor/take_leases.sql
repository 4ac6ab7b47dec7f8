-- Takes (or renews) the leases of sensors $2 for holder $1: a lease is free when it has
-- expired or is already ours. Returns the sensors this holder may run.
INSERT INTO attune.sensor_lease (sensor_id, holder, expires_at)
SELECT id, $1, clock_timestamp() + make_interval(secs => $3) FROM unnest($2::bigint[]) AS id
ON CONFLICT (sensor_id) DO UPDATE
   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
 WHERE attune.sensor_lease.holder = EXCLUDED.holder OR attune.sensor_lease.expires_at < clock_timestamp()
RETURNING sensor_id
