//! The summary: one row per reported figure — measured value, the baseline it is compared
//! with (measured in the same run), the ratio and the goal — shared by every section.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

/// How a figure's value reads: which direction is better decides the ratio's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    EventsPerSec,
    MegabytesPerSec,
    Micros,
    Millis,
    Nanos,
    Bytes,
    Ratio,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::EventsPerSec => "events/s",
            Unit::MegabytesPerSec => "MB/s",
            Unit::Micros => "µs",
            Unit::Millis => "ms",
            Unit::Nanos => "ns",
            Unit::Bytes => "bytes",
            Unit::Ratio => "×",
        }
    }

    /// Throughputs: higher is better. Latencies and sizes: lower is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::EventsPerSec | Unit::MegabytesPerSec)
    }

    pub fn format(self, value: f64) -> String {
        match self {
            Unit::EventsPerSec => format!("{}/s", si(value)),
            Unit::MegabytesPerSec => format!("{value:.1} MB/s"),
            Unit::Micros if value >= 10_000.0 => format!("{:.1} ms", value / 1000.0),
            Unit::Micros if value >= 100.0 => format!("{value:.0} µs"),
            Unit::Micros => format!("{value:.1} µs"),
            Unit::Millis if value < 1.0 => format!("{value:.3} ms"),
            Unit::Millis if value < 100.0 => format!("{value:.2} ms"),
            Unit::Millis => format!("{value:.0} ms"),
            Unit::Nanos if value >= 10_000.0 => format!("{:.1} µs", value / 1000.0),
            Unit::Nanos => format!("{value:.1} ns"),
            Unit::Bytes => format!("{value:.0} B"),
            Unit::Ratio => format!("{value:.2}×"),
        }
    }
}

/// `1234567` → `1.23M`.
pub fn si(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// How the ratio is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatioKind {
    /// How many times better than the baseline (`value / baseline` for throughputs,
    /// `baseline / value` for latencies): "37× faster".
    Speedup,
    /// `value / baseline` whatever the unit: "1.08× the floor".
    Multiple,
}

/// A baseline measured in the same run.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
    pub unit: Unit,
}

/// What a figure should reach.
#[derive(Debug, Clone)]
pub struct Goal {
    pub text: String,
    pub met: bool,
}

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct Figure {
    pub id: String,
    pub name: String,
    pub value: f64,
    pub unit: Unit,
    pub baseline: Option<Baseline>,
    pub ratio: Option<f64>,
    pub ratio_kind: RatioKind,
    pub goal: Option<Goal>,
    pub note: Option<String>,
}

impl Figure {
    pub fn new(id: impl Into<String>, name: impl Into<String>, value: f64, unit: Unit) -> Self {
        Figure {
            id: id.into(),
            name: name.into(),
            value,
            unit,
            baseline: None,
            ratio: None,
            ratio_kind: RatioKind::Speedup,
            goal: None,
            note: None,
        }
    }

    /// Compares with a baseline (skipped when the baseline was not measured in this run).
    pub fn vs(mut self, name: &str, baseline: Option<f64>, unit: Unit, kind: RatioKind) -> Self {
        self.ratio_kind = kind;
        if let Some(value) = baseline.filter(|v| *v > 0.0 && v.is_finite()) {
            self.ratio = Some(match kind {
                RatioKind::Multiple => self.value / value,
                RatioKind::Speedup if self.unit.higher_is_better() => self.value / value,
                RatioKind::Speedup => value / self.value,
            });
            self.baseline = Some(Baseline {
                name: name.to_string(),
                value,
                unit,
            });
        }
        self
    }

    /// A goal on the measured value.
    pub fn goal_value(mut self, text: &str, met: impl FnOnce(f64) -> bool) -> Self {
        let met = met(self.value);
        self.goal = Some(Goal {
            text: text.to_string(),
            met,
        });
        self
    }

    /// A goal on the ratio (not met when the baseline is missing).
    pub fn goal_ratio(mut self, text: &str, met: impl FnOnce(f64) -> bool) -> Self {
        let met = self.ratio.is_some_and(met);
        self.goal = Some(Goal {
            text: text.to_string(),
            met,
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    fn ratio_text(&self) -> String {
        let Some(ratio) = self.ratio else {
            return "—".into();
        };
        let (ratio, word) = match self.ratio_kind {
            RatioKind::Speedup if ratio < 1.0 => (1.0 / ratio, "worse"),
            RatioKind::Speedup => (ratio, "better"),
            RatioKind::Multiple => (ratio, "baseline"),
        };
        let number = if ratio >= 100.0 {
            format!("{ratio:.0}×")
        } else if ratio >= 10.0 {
            format!("{ratio:.1}×")
        } else {
            format!("{ratio:.2}×")
        };
        format!("{number} {word}")
    }

    pub fn row(&self) -> String {
        let baseline = self.baseline.as_ref().map_or("—".to_string(), |b| {
            format!("{}: {}", b.name, b.unit.format(b.value))
        });
        let (goal, met) = match &self.goal {
            Some(g) => (g.text.clone(), if g.met { "✅ yes" } else { "❌ no" }),
            None => ("—".to_string(), ""),
        };
        let name = match &self.note {
            Some(note) => format!("{} ({note})", self.name),
            None => self.name.clone(),
        };
        format!(
            "| {name} | {} | {baseline} | {} | {goal} | {met} |",
            self.unit.format(self.value),
            self.ratio_text()
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "value": self.value,
            "unit": self.unit.name(),
            "baseline": self.baseline.as_ref().map(|b| json!({
                "name": b.name, "value": b.value, "unit": b.unit.name(),
            })),
            "ratio": self.ratio,
            "ratio_kind": match self.ratio_kind {
                RatioKind::Speedup => "times better than baseline",
                RatioKind::Multiple => "value / baseline",
            },
            "goal": self.goal.as_ref().map(|g| g.text.clone()),
            "met": self.goal.as_ref().map(|g| g.met),
            "note": self.note,
        })
    }
}

/// The summary table.
pub fn table(figures: &[Figure]) -> String {
    let mut md = String::from(
        "| figure | measured | baseline (same run) | ratio | goal | met? |\n|---|---:|---|---:|---|---|\n",
    );
    for figure in figures {
        md.push_str(&figure.row());
        md.push('\n');
    }
    md
}

/// Values measured by earlier sections, for later sections' ratios.
#[derive(Debug, Default)]
pub struct Values {
    values: Mutex<BTreeMap<String, f64>>,
}

impl Values {
    pub fn set(&self, key: &str, value: f64) {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), value);
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_follow_the_unit() {
        let throughput = Figure::new("a", "a", 1000.0, Unit::EventsPerSec).vs(
            "b",
            Some(10.0),
            Unit::EventsPerSec,
            RatioKind::Speedup,
        );
        assert_eq!(throughput.ratio, Some(100.0));
        let latency = Figure::new("a", "a", 2.0, Unit::Micros).vs(
            "b",
            Some(10.0),
            Unit::Micros,
            RatioKind::Speedup,
        );
        assert_eq!(latency.ratio, Some(5.0));
        let multiple = Figure::new("a", "a", 12.0, Unit::Micros).vs(
            "b",
            Some(10.0),
            Unit::Micros,
            RatioKind::Multiple,
        );
        assert_eq!(multiple.ratio, Some(1.2));
        let missing = Figure::new("a", "a", 1.0, Unit::Micros)
            .vs("b", None, Unit::Micros, RatioKind::Multiple)
            .goal_ratio("≤ 1.2×", |r| r <= 1.2);
        assert!(missing.ratio.is_none() && !missing.goal.unwrap().met);
    }
}
