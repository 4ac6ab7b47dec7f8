//! Request rates, with governor's GCRA (a burst up to the limit, then refilled at the rate):
//!
//! - [`UserRateLimit`]: each caller's requests per second (`ATTUNE_RATE_LIMIT_PER_SECOND`,
//!   0 = off), every role alike.
//! - [`AuthThrottle`]: `/auth/login` and `/auth/register`, always on, whatever the role:
//!   [`PER_IP_PER_MINUTE`] attempts per client address and [`PER_LOGIN_PER_MINUTE`] per
//!   login (case-insensitive). A client that keeps trying while told to wait is backed off:
//!   each refused attempt doubles its wait, up to [`MAX_BACKOFF`].

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

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
        self.limiter
            .check_key(&identity_id)
            .map_err(|not_until| whole_seconds(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets users whose bucket is full again (bounded memory).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

/// Attempts per minute one client address may make at one door.
pub const PER_IP_PER_MINUTE: u32 = 10;
/// Attempts per minute at one login (whatever its case), from anywhere, at one door.
pub const PER_LOGIN_PER_MINUTE: u32 = 5;
/// The longest wait backing off can impose.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The throttled routes; each has budgets of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    Login,
    Register,
}

/// The throttle of the unauthenticated routes that take a password.
pub struct AuthThrottle {
    per_ip: Backoff<(Door, IpAddr)>,
    per_login: Backoff<(Door, String)>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            per_ip: Backoff::per_minute(PER_IP_PER_MINUTE),
            per_login: Backoff::per_minute(PER_LOGIN_PER_MINUTE),
        }
    }
}

impl AuthThrottle {
    /// Counts one attempt at `door` from `ip` for `login`: Ok, or a 429 with `Retry-After`.
    /// The address is checked first, so a client spraying logins is stopped before each
    /// new login costs memory.
    pub fn check(&self, door: Door, ip: IpAddr, login: &str) -> Result<(), ApiError> {
        let refused = |secs: u64| ApiError::RateLimited { retry_after_secs: secs };
        self.per_ip.check(&(door, client_key(ip))).map_err(refused)?;
        // Logins are at most 128 characters; anything longer is refused later anyway.
        let login: String = login.chars().take(128).collect::<String>().to_lowercase();
        self.per_login.check(&(door, login)).map_err(refused)
    }

    /// Forgets clients and logins that have not been refused lately (bounded memory).
    pub fn forget_idle(&self) {
        self.per_ip.forget_idle();
        self.per_login.forget_idle();
    }
}

/// The key of a client address: IPv4 (mapped ones too) as is, IPv6 by its /64, which one
/// client usually holds whole.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A keyed GCRA limiter whose refusals back off: the first refusal waits for the next
/// free slot (at least one refill period); each attempt made while waiting doubles the
/// wait, up to [`MAX_BACKOFF`]. An attempt that passes clears the key's refusals.
struct Backoff<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    /// Time between two refills of the bucket.
    period: Duration,
    waiting: Mutex<HashMap<K, Waiting>>,
}

struct Waiting {
    until: Instant,
    refusals: u32,
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    fn per_minute(n: u32) -> Backoff<K> {
        let n = NonZeroU32::new(n).expect("a positive budget");
        Backoff {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            clock: DefaultClock::default(),
            period: Duration::from_secs(60) / n.get(),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// `period × 2^(refusals − 1)`, capped.
    fn backoff(&self, refusals: u32) -> Duration {
        self.period.saturating_mul(1u32 << refusals.saturating_sub(1).min(16)).min(MAX_BACKOFF)
    }

    /// Ok, or the whole seconds to wait (at least 1).
    fn check(&self, key: &K) -> Result<(), u64> {
        let now = Instant::now();
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(w) = waiting.get_mut(key) {
            if w.until > now {
                // Tried again while told to wait: wait longer.
                w.refusals = w.refusals.saturating_add(1);
                w.until = w.until.max(now + self.backoff(w.refusals));
                return Err(whole_seconds(w.until - now));
            }
        }
        match self.limiter.check_key(key) {
            Ok(()) => {
                waiting.remove(key);
                Ok(())
            }
            Err(not_until) => {
                let free_slot = not_until.wait_time_from(self.clock.now());
                let w = waiting.entry(key.clone()).or_insert(Waiting { until: now, refusals: 0 });
                w.refusals = w.refusals.saturating_add(1);
                w.until = now + free_slot.max(self.backoff(w.refusals));
                Err(whole_seconds(w.until - now))
            }
        }
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        let now = Instant::now();
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A key whose wait ended more than the longest backoff ago starts afresh.
        waiting.retain(|_, w| w.until + MAX_BACKOFF > now);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    #[test]
    fn per_login_budget_is_case_insensitive_and_refusals_back_off() {
        let t = AuthThrottle::default();
        let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
        for i in 0..PER_LOGIN_PER_MINUTE {
            let login = if i % 2 == 0 { "Ada" } else { "ada" };
            assert!(t.check(Door::Login, ip(i as u8), login).is_ok(), "attempt {i}");
        }
        let first = match t.check(Door::Login, ip(100), "ADA") {
            Err(ApiError::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("expected 429, got {other:?}"),
        };
        assert!((1..=12).contains(&first), "{first}");
        let second = match t.check(Door::Login, ip(101), "ada") {
            Err(ApiError::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("expected 429, got {other:?}"),
        };
        assert!(second > first, "hammering backs off: {first} then {second}");
        // Other logins and the other door have budgets of their own.
        assert!(t.check(Door::Login, ip(102), "grace").is_ok());
        assert!(t.check(Door::Register, ip(103), "ada").is_ok());
    }

    #[test]
    fn per_ip_budget_counts_every_login() {
        let t = AuthThrottle::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        for i in 0..PER_IP_PER_MINUTE {
            assert!(t.check(Door::Login, ip, &format!("user{i}")).is_ok());
        }
        assert!(matches!(t.check(Door::Login, ip, "fresh"), Err(ApiError::RateLimited { .. })));
        assert!(t.check(Door::Login, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), "fresh").is_ok());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    }
}
