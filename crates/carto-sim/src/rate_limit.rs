//! Rate limits per user and endpoint group with the generic cell rate algorithm (what CARTO's
//! redis-cell does), and the published limits per plan (carto-sql-api.md section 8).
use crate::config::Plan;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Query,
    JobCreate,
    JobGet,
    JobDelete,
    CopyFrom,
    CopyTo,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Query => "query",
            Group::JobCreate => "job_create",
            Group::JobGet => "job_get",
            Group::JobDelete => "job_delete",
            Group::CopyFrom => "copy_from",
            Group::CopyTo => "copy_to",
        }
    }
    pub fn parse(s: &str) -> Option<Group> {
        Some(match s {
            "query" | "sql" => Group::Query,
            "job_create" => Group::JobCreate,
            "job_get" => Group::JobGet,
            "job_delete" => Group::JobDelete,
            "copy_from" | "copyfrom" => Group::CopyFrom,
            "copy_to" | "copyto" => Group::CopyTo,
            _ => return None,
        })
    }
}

/// `count` requests per `period_secs`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateSpec {
    pub count: u32,
    pub period_secs: f64,
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateSpec {
    const fn new(count: u32, period_secs: f64, burst: u32) -> RateSpec {
        RateSpec { count, period_secs, burst: Some(burst) }
    }
    pub fn capacity(&self) -> u32 {
        self.burst.unwrap_or(self.count).max(1)
    }
}

pub fn plan_limit(plan: Plan, g: Group) -> Option<RateSpec> {
    use Group::*;
    use Plan::*;
    Some(match (plan, g) {
        (Unlimited, _) => return None,
        (Enterprise, Query) => RateSpec::new(15, 1.0, 15),
        (Individual | Free, Query) => RateSpec::new(6, 1.0, 6),
        (Enterprise, JobCreate | JobGet | JobDelete) => RateSpec::new(5, 1.0, 5),
        (Individual, JobCreate | JobGet | JobDelete) => RateSpec::new(2, 1.0, 2),
        (Free, JobCreate | JobGet | JobDelete) => RateSpec::new(1, 1.0, 1),
        (Enterprise, CopyFrom | CopyTo) => RateSpec::new(3, 60.0, 3),
        (Individual | Free, CopyFrom | CopyTo) => RateSpec::new(1, 60.0, 1),
    })
}

/// /sql statement timeout of a plan, ms (0 = none).
pub fn plan_statement_timeout_ms(plan: Plan, unlimited_ms: u64) -> u64 {
    match plan {
        Plan::Free => 5_000,
        Plan::Individual => 15_000,
        Plan::Enterprise => 25_000,
        Plan::Unlimited => unlimited_ms,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds to wait (CARTO sends floor(retry) + 1).
    pub retry_after_secs: u64,
}

/// GCRA state: the theoretical arrival time per (user, group).
#[derive(Default)]
pub struct RateLimiter {
    tat: Mutex<HashMap<(String, Group), Instant>>,
}

impl RateLimiter {
    pub fn check(&self, user: &str, g: Group, spec: &RateSpec) -> Decision {
        self.check_at(user, g, spec, Instant::now())
    }

    pub fn check_at(&self, user: &str, g: Group, spec: &RateSpec, now: Instant) -> Decision {
        let cap = spec.capacity();
        // Clamped so that odd admin input cannot overflow Duration/Instant arithmetic.
        let t = crate::config::secs(spec.period_secs / spec.count.max(1) as f64, 1e-6).min(Duration::from_secs(86_400 * 365));
        let cap = cap.min(1_000_000);
        let window = t * cap;
        let mut m = match self.tat.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let tat = m.get(&(user.to_string(), g)).copied().unwrap_or(now).max(now);
        let new_tat = tat + t;
        // The request is allowed when new_tat - window <= now.
        let allow_at = new_tat.checked_sub(window).unwrap_or(now);
        if allow_at > now {
            let retry = allow_at - now;
            return Decision {
                allowed: false,
                limit: cap,
                remaining: 0,
                reset_secs: (tat - now).as_secs_f64().ceil() as u64,
                retry_after_secs: retry.as_secs() + 1,
            };
        }
        m.insert((user.to_string(), g), new_tat);
        let used = (new_tat - now).as_secs_f64() / t.as_secs_f64();
        let remaining = (cap as f64 - used).floor().max(0.0) as u32;
        Decision { allowed: true, limit: cap, remaining, reset_secs: (new_tat - now).as_secs_f64().ceil() as u64, retry_after_secs: 0 }
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.tat.lock() {
            m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_burst_then_refill() {
        let rl = RateLimiter::default();
        let spec = RateSpec::new(6, 1.0, 6);
        let t0 = Instant::now();
        for i in 0..6 {
            let d = rl.check_at("u", Group::Query, &spec, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 5 - i);
            assert_eq!(d.limit, 6);
        }
        let d = rl.check_at("u", Group::Query, &spec, t0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
        // one emission interval later, one more is allowed
        let d = rl.check_at("u", Group::Query, &spec, t0 + Duration::from_millis(170));
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // other users and groups are independent
        assert!(rl.check_at("v", Group::Query, &spec, t0).allowed);
        assert!(rl.check_at("u", Group::CopyTo, &spec, t0).allowed);
    }

    #[test]
    fn copy_one_per_minute() {
        let rl = RateLimiter::default();
        let spec = plan_limit(Plan::Free, Group::CopyFrom).unwrap_or(RateSpec::new(1, 60.0, 1));
        let t0 = Instant::now();
        assert!(rl.check_at("u", Group::CopyFrom, &spec, t0).allowed);
        let d = rl.check_at("u", Group::CopyFrom, &spec, t0 + Duration::from_secs(1));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 60);
        assert!(rl.check_at("u", Group::CopyFrom, &spec, t0 + Duration::from_secs(60)).allowed);
        assert!(plan_limit(Plan::Unlimited, Group::Query).is_none());
    }
}
