//! Checks JS numbers that stand for byte offsets, sizes and LSNs before they become u64.
//! It must never truncate silently: a fraction, a negative or anything above 2^53 is an error.

use crate::io_errors::{SkError, SkResult};

const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

pub fn to_u64(value: f64, name: &str) -> SkResult<u64> {
    if value.is_finite() && (0.0..=MAX_SAFE_INTEGER).contains(&value) && value.fract() == 0.0 {
        Ok(value as u64)
    } else {
        Err(SkError::invalid_argument(format!("{name} must be a non-negative safe integer, got {value}")))
    }
}
