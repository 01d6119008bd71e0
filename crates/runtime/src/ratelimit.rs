//! Token buckets: `requests_per_second` sustained and `burst` at once per API key, and the same
//! for failed authentications per client address. A refused request gets `429` with
//! `Retry-After`.

use std::{collections::HashMap, sync::Mutex};

use imagelake_core::{ErrorCode, Timestamp};

use crate::error::Error;

struct Bucket {
    tokens: f64,
    at: Timestamp,
}

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate: rate.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket.
    pub fn check(&self, key: &str, now: Timestamp) -> Result<(), Error> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Full buckets carry no state worth keeping.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + elapsed(b.at, now) * rate < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens + elapsed(bucket.at, now) * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        let mut err = Error::new(
            ErrorCode::RateLimited,
            format!("too many requests; retry in {wait} s"),
        );
        err.retry_after = Some(wait);
        Err(err)
    }

    /// Gives back a token taken from `key`'s bucket.
    pub fn refund(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> f64 {
    (to - from).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills() {
        let limiter = RateLimiter::new(2.0, 3);
        let t = chrono::Utc::now();
        for _ in 0..3 {
            limiter.check("k", t).unwrap();
        }
        let err = limiter.check("k", t).unwrap_err();
        assert_eq!(err.code, ErrorCode::RateLimited);
        assert_eq!(err.retry_after, Some(1));
        limiter.check("other", t).expect("buckets are per key");
        limiter.refund("k");
        limiter.check("k", t).expect("a refunded token");
        assert!(limiter.check("k", t).is_err());
        limiter
            .check("k", t + chrono::Duration::milliseconds(600))
            .expect("refilled");
    }
}
