//! Per-account clocks: real time plus an offset the control plane moves. The only place the
//! engine reads the time; the core is handed `now`.

use std::collections::HashMap;

use parking_lot::RwLock;

#[derive(Default)]
pub struct Clocks {
    offsets: RwLock<HashMap<String, i64>>,
}

pub fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Clocks {
    pub fn offset(&self, account: &str) -> i64 {
        self.offsets.read().get(account).copied().unwrap_or(0)
    }

    pub fn now(&self, account: &str) -> i64 {
        real_now_ms() + self.offset(account)
    }

    /// The earliest time any account's clock shows (offsets only move forward, but a reset
    /// puts one back to real time).
    pub fn earliest_offset(&self) -> i64 {
        self.offsets
            .read()
            .values()
            .copied()
            .min()
            .unwrap_or(0)
            .min(0)
    }

    pub fn replace(&self, offsets: HashMap<String, i64>) {
        *self.offsets.write() = offsets.into_iter().filter(|(_, o)| *o != 0).collect();
    }

    pub fn set_offset(&self, account: &str, offset: i64) {
        let mut o = self.offsets.write();
        if offset == 0 {
            o.remove(account);
        } else {
            o.insert(account.to_owned(), offset);
        }
    }
}
