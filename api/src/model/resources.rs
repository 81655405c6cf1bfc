//! Amounts of resources: what a task asks for, a quota, a limit, a reservation.

use serde::{Deserialize, Serialize};

/// An amount of cores, memory and disk. In JSON an unbounded dimension
/// (the maximum value, as in [`Resources::UNLIMITED`]) is `null`, not a
/// 20-digit number; binary encodings (the Raft log) keep the number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, with = "unbounded")]
    pub cores: u32,
    #[serde(default, with = "unbounded")]
    pub memory_bytes: u64,
    #[serde(default, with = "unbounded")]
    pub disk_bytes: u64,
}

/// Serde for one dimension: its maximum value is "unbounded", `null` in
/// human-readable formats.
mod unbounded {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub trait Amount: Copy + PartialEq + Serialize + for<'de> Deserialize<'de> {
        const MAX: Self;
    }
    impl Amount for u32 {
        const MAX: Self = u32::MAX;
    }
    impl Amount for u64 {
        const MAX: Self = u64::MAX;
    }

    pub fn serialize<T: Amount, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            (*value != T::MAX).then_some(*value).serialize(serializer)
        } else {
            value.serialize(serializer)
        }
    }

    pub fn deserialize<'de, T: Amount, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        if deserializer.is_human_readable() {
            Ok(Option::<T>::deserialize(deserializer)?.unwrap_or(T::MAX))
        } else {
            T::deserialize(deserializer)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbounded_dimensions_are_null_in_json_and_numbers_in_the_log() {
        let limit = Resources::new(8, u64::MAX, u64::MAX);
        let json = serde_json::to_string(&limit).unwrap();
        assert_eq!(json, r#"{"cores":8,"memory_bytes":null,"disk_bytes":null}"#);
        assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), limit);
        // What older versions wrote still reads back.
        let old = r#"{"cores":4294967295,"memory_bytes":18446744073709551615}"#;
        let read: Resources = serde_json::from_str(old).unwrap();
        assert_eq!(read, Resources::new(u32::MAX, u64::MAX, 0));
        let bytes = postcard::to_allocvec(&limit).unwrap();
        assert_eq!(postcard::from_bytes::<Resources>(&bytes).unwrap(), limit);
        assert_eq!(
            bytes,
            postcard::to_allocvec(&(8u32, u64::MAX, u64::MAX)).unwrap(),
            "the binary form is unchanged"
        );
    }
}
