//! Per-user request rate (`ATTUNE_RATE_LIMIT_PER_SECOND`), with governor's GCRA: a user
//! may burst up to the limit and is then refilled at that rate. Admins are exempt.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct UserRateLimit {
    limiter: DefaultKeyedRateLimiter<i64>,
    clock: DefaultClock,
}

impl UserRateLimit {
    /// None when `per_second` is 0 (off).
    pub fn new(per_second: u32) -> Option<UserRateLimit> {
        let rate = NonZeroU32::new(per_second)?;
        Some(UserRateLimit { limiter: RateLimiter::keyed(Quota::per_second(rate)), clock: DefaultClock::default() })
    }

    /// Ok, or the whole seconds to wait before the next request is allowed (at least 1).
    pub fn check(&self, identity_id: i64) -> Result<(), u64> {
        self.limiter.check_key(&identity_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs_f64().ceil() as u64).max(1)
        })
    }

    /// Forgets users whose bucket is full again (bounded memory).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}
