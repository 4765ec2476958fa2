//! Repeated measurements of one quantity on one daemon, and the unit they
//! are in. Medians, not means: on a shared 2-core machine a neighbour's
//! compile produces outliers that would drag a mean; min and max show the
//! spread instead of hiding it.

/// What a row measures; values are stored already in this unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Wall time of one operation.
    Millis,
    /// Throughput: megabytes (10^6 bytes) per second.
    MegabytesPerSecond,
    /// Resident or proportional memory.
    Mebibytes,
    /// CPU time as a share of one core.
    PercentOfCore,
}

impl Unit {
    /// Whether a smaller number is the better one (all but throughput).
    pub fn lower_is_better(self) -> bool {
        !matches!(self, Unit::MegabytesPerSecond)
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::MegabytesPerSecond => "MB/s",
            Unit::Mebibytes => "MiB",
            Unit::PercentOfCore => "% core",
        }
    }

    /// A value with as many digits as its size deserves.
    pub fn format(self, value: f64) -> String {
        if value >= 100.0 {
            format!("{value:.0}")
        } else if value >= 10.0 {
            format!("{value:.1}")
        } else {
            format!("{value:.2}")
        }
    }
}

/// The values one daemon produced for one row, in measurement order.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The middle value (mean of the two middle ones for an even count).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[f64]) -> Samples {
        let mut s = Samples::default();
        for v in values {
            s.push(*v);
        }
        s
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(of(&[3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(of(&[4.0, 1.0, 3.0, 2.0]).median(), 2.5);
        assert!(of(&[]).median().is_nan());
    }

    #[test]
    fn spread_is_min_and_max() {
        let s = of(&[5.0, 9.0, 1.0]);
        assert_eq!((s.min(), s.max()), (1.0, 9.0));
    }
}
