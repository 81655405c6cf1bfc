//! Amounts of resources: what a task asks for, a quota, a limit, a reservation.

use serde::{Deserialize, Serialize};

/// An amount of cores, memory and disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub cores: u32,
    #[serde(default)]
    pub memory_bytes: u64,
    #[serde(default)]
    pub disk_bytes: u64,
}

impl Resources {
    pub const ZERO: Self = Self {
        cores: 0,
        memory_bytes: 0,
        disk_bytes: 0,
    };

    /// No bound in any dimension (a limit that limits nothing).
    pub const UNLIMITED: Self = Self {
        cores: u32::MAX,
        memory_bytes: u64::MAX,
        disk_bytes: u64::MAX,
    };

    pub fn new(cores: u32, memory_bytes: u64, disk_bytes: u64) -> Self {
        Self {
            cores,
            memory_bytes,
            disk_bytes,
        }
    }

    /// Every dimension of `self` is at most the one of `other`.
    pub fn fits_in(&self, other: &Self) -> bool {
        self.cores <= other.cores
            && self.memory_bytes <= other.memory_bytes
            && self.disk_bytes <= other.disk_bytes
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// Sum, saturating (amounts are validated far below the limits).
    pub fn plus(&self, other: &Self) -> Self {
        Self {
            cores: self.cores.saturating_add(other.cores),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_add(other.disk_bytes),
        }
    }

    /// Difference, floored at zero in each dimension.
    pub fn minus(&self, other: &Self) -> Self {
        Self {
            cores: self.cores.saturating_sub(other.cores),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(other.disk_bytes),
        }
    }

    /// `self` repeated `n` times.
    pub fn times(&self, n: u32) -> Self {
        Self {
            cores: self.cores.saturating_mul(n),
            memory_bytes: self.memory_bytes.saturating_mul(u64::from(n)),
            disk_bytes: self.disk_bytes.saturating_mul(u64::from(n)),
        }
    }

    /// Per dimension minimum.
    pub fn min(&self, other: &Self) -> Self {
        Self {
            cores: self.cores.min(other.cores),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            disk_bytes: self.disk_bytes.min(other.disk_bytes),
        }
    }

    /// The largest share `self` takes of `total` over the dimensions `total`
    /// has (DRF's dominant share).
    pub fn dominant_share(&self, total: &Self) -> f64 {
        let share = |used: f64, all: f64| if all > 0.0 { used / all } else { 0.0 };
        share(f64::from(self.cores), f64::from(total.cores))
            .max(share(self.memory_bytes as f64, total.memory_bytes as f64))
            .max(share(self.disk_bytes as f64, total.disk_bytes as f64))
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cores, {} memory, {} disk",
            self.cores,
            crate::units::format_bytes(self.memory_bytes),
            crate::units::format_bytes(self.disk_bytes)
        )
    }
}
