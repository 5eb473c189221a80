//! Pod IPs: one loopback address per pod, so every replica can listen on the same port.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so any address in it can be bound without configuration. The
//! agent hands out `<prefix>.2` … `<prefix>.254` from a /24 given by `--pod-ip-prefix`; `.1` is left out
//! because `127.0.0.1` is where the API server, Kafka and Postgres listen. Agents running side by side must
//! use different prefixes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("all pod IPs of {prefix}.0/24 are in use")]
    Exhausted { prefix: String },
    #[error("invalid --pod-ip-prefix {prefix:?}: expected three octets in 127.0.0.0/8, e.g. 127.0.0")]
    InvalidPrefix { prefix: String },
}

/// Hands out and takes back loopback addresses in one /24. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct IpPool {
    prefix: [u8; 3],
    used: Arc<Mutex<BTreeSet<u8>>>,
}

impl IpPool {
    /// A pool for `prefix` (`"127.0.0"`), which must lie in 127.0.0.0/8.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidPrefix {
            prefix: prefix.to_string(),
        };
        let octets: Vec<u8> = prefix
            .split('.')
            .map(|o| o.parse::<u8>().map_err(|_| invalid()))
            .collect::<Result<_, _>>()?;
        match octets.as_slice() {
            [127, b, c] => Ok(Self {
                prefix: [127, *b, *c],
                used: Arc::default(),
            }),
            _ => Err(invalid()),
        }
    }

    /// The lowest free address.
    pub fn allocate(&self) -> Result<Ipv4Addr, Error> {
        let mut used = self.lock();
        let host = (2..=254u8)
            .find(|host| !used.contains(host))
            .ok_or_else(|| Error::Exhausted {
                prefix: self.prefix_text(),
            })?;
        used.insert(host);
        let [a, b, c] = self.prefix;
        Ok(Ipv4Addr::new(a, b, c, host))
    }

    /// Gives `ip` back; addresses outside the pool are ignored.
    pub fn release(&self, ip: Ipv4Addr) {
        let [a, b, c, host] = ip.octets();
        if [a, b, c] == self.prefix {
            self.lock().remove(&host);
        }
    }

    fn prefix_text(&self) -> String {
        let [a, b, c] = self.prefix;
        format!("{a}.{b}.{c}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u8>> {
        // A panic while holding this lock leaves the set consistent (single insert/remove), so a poisoned
        // lock is still safe to use.
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_addresses_and_reuses_released_ones() {
        let pool = IpPool::new("127.0.9").expect("valid prefix");
        let a = pool.allocate().expect("free");
        let b = pool.allocate().expect("free");
        assert_eq!(a, Ipv4Addr::new(127, 0, 9, 2));
        assert_eq!(b, Ipv4Addr::new(127, 0, 9, 3));
        pool.release(a);
        assert_eq!(pool.allocate().expect("free"), a);
    }

    #[test]
    fn rejects_prefix_outside_loopback() {
        assert!(IpPool::new("10.0.0").is_err());
        assert!(IpPool::new("127.0").is_err());
    }

    #[test]
    fn runs_out_after_253_pods() {
        let pool = IpPool::new("127.0.8").expect("valid prefix");
        for _ in 2..=254 {
            pool.allocate().expect("free");
        }
        assert!(matches!(pool.allocate(), Err(Error::Exhausted { .. })));
    }
}
