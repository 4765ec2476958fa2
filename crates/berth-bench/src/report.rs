//! The bench's output: rows of samples per storage driver, rendered as the
//! Markdown results file (`bench/results/<date>-<machine>.md`, with the
//! machine, versions and method) and as a plain-text summary for stdout.

use std::fmt::Write as _;

use crate::samples::{Samples, Unit};

/// One measured quantity on one storage driver.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub unit: Unit,
    pub berth: Samples,
    /// `None` where dockerd cannot be measured (zfs-fuse, berth-only
    /// endpoints).
    pub dockerd: Option<Samples>,
    pub note: Option<String>,
}

impl Row {
    pub fn new(
        name: impl Into<String>,
        unit: Unit,
        berth: Samples,
        dockerd: Option<Samples>,
    ) -> Row {
        Row {
            name: name.into(),
            unit,
            berth,
            dockerd,
            note: None,
        }
    }

    /// Adds a remark shown after the row's name (remarks accumulate).
    pub fn with_note(mut self, note: impl Into<String>) -> Row {
        let note = note.into();
        self.note = Some(match self.note.take() {
            Some(old) => format!("{old}; {note}"),
            None => note,
        });
        self
    }

    /// berth's median over dockerd's.
    pub fn ratio(&self) -> Option<f64> {
        let d = self.dockerd.as_ref()?;
        (!d.is_empty() && !self.berth.is_empty()).then(|| self.berth.median() / d.median())
    }

    /// Which daemon did better; within 5% counts as a tie.
    pub fn better(&self) -> &'static str {
        match self.ratio() {
            None => "—",
            Some(r) if (0.95..=1.0 / 0.95).contains(&r) => "≈",
            Some(r) if (r < 1.0) == self.unit.lower_is_better() => "berthd",
            Some(_) => "dockerd",
        }
    }

    /// Whether berth lost this row (the rows the report must explain).
    pub fn berth_worse(&self) -> bool {
        self.better() == "dockerd"
    }
}

/// The rows of one storage driver.
#[derive(Debug, Clone)]
pub struct DriverReport {
    pub driver: String,
    pub storage: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub minutes: f64,
}

/// Everything the results file says besides the rows.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub date: String,
    pub machine: Vec<(String, String)>,
    pub versions: Vec<(String, String)>,
    pub repetitions: Vec<(String, String)>,
    pub method: Vec<String>,
    pub not_measured: Vec<String>,
    pub command: String,
    pub total_minutes: f64,
}

fn cell(s: &Samples, unit: Unit) -> String {
    if s.is_empty() {
        return "—".to_string();
    }
    if s.len() == 1 {
        return unit.format(s.median());
    }
    format!(
        "{} [{}–{}]",
        unit.format(s.median()),
        unit.format(s.min()),
        unit.format(s.max())
    )
}

/// The Markdown results file.
pub fn markdown(ctx: &Context, drivers: &[DriverReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# berth vs dockerd — {}\n", ctx.date);
    let _ = writeln!(
        out,
        "Produced by `{}` in {:.1} minutes. Each cell is the median \
         [min–max] over n runs; *berth/dockerd* is the ratio of medians \
         (below 1 is better for times and memory, above 1 is better for \
         throughput); *better* names the winner, ≈ within 5%.\n",
        ctx.command, ctx.total_minutes
    );
    let _ = writeln!(out, "## Machine\n");
    for (k, v) in &ctx.machine {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(out, "\n## Versions\n");
    for (k, v) in &ctx.versions {
        let _ = writeln!(out, "- {k}: {v}");
    }
    for d in drivers {
        let _ = writeln!(out, "\n## {}\n", d.driver);
        let _ = writeln!(
            out,
            "Storage: {}. Row set took {:.1} minutes.\n",
            d.storage, d.minutes
        );
        let _ = writeln!(
            out,
            "| measurement | unit | berthd | dockerd | berth/dockerd | better | n |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for r in &d.rows {
            let dockerd = r
                .dockerd
                .as_ref()
                .map(|s| cell(s, r.unit))
                .unwrap_or_else(|| "n/a".to_string());
            let ratio = r
                .ratio()
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "—".to_string());
            let n = match &r.dockerd {
                Some(d) if d.len() != r.berth.len() => format!("{}/{}", r.berth.len(), d.len()),
                _ => r.berth.len().to_string(),
            };
            let name = match &r.note {
                Some(note) => format!("{} ({note})", r.name),
                None => r.name.clone(),
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {dockerd} | {ratio} | {} | {n} |",
                r.unit.suffix(),
                cell(&r.berth, r.unit),
                r.better()
            );
        }
        if !d.notes.is_empty() {
            let _ = writeln!(out);
            for n in &d.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
    }
    let _ = writeln!(out, "\n## Repetitions\n");
    for (k, v) in &ctx.repetitions {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(out, "\n## Method\n");
    for m in &ctx.method {
        let _ = writeln!(out, "- {m}");
    }
    if !ctx.not_measured.is_empty() {
        let _ = writeln!(out, "\n## Not measured\n");
        for m in &ctx.not_measured {
            let _ = writeln!(out, "- {m}");
        }
    }
    out
}

/// The plain-text summary: one line per row.
pub fn summary(drivers: &[DriverReport]) -> String {
    let mut out = String::new();
    for d in drivers {
        let _ = writeln!(out, "== {} ({:.1} min)", d.driver, d.minutes);
        for r in &d.rows {
            let dockerd = r
                .dockerd
                .as_ref()
                .map(|s| format!("{} {}", r.unit.format(s.median()), r.unit.suffix()))
                .unwrap_or_else(|| "n/a".to_string());
            let ratio = r
                .ratio()
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".to_string());
            let _ = writeln!(
                out,
                "  {:<52} berthd {:>10} {:<6} dockerd {:>14}  ratio {:>5}  better: {}",
                r.name,
                r.unit.format(r.berth.median()),
                r.unit.suffix(),
                dockerd,
                ratio,
                r.better()
            );
        }
        let worse: Vec<&str> = d
            .rows
            .iter()
            .filter(|r| r.berth_worse())
            .map(|r| r.name.as_str())
            .collect();
        if !worse.is_empty() {
            let _ = writeln!(out, "  dockerd better on: {}", worse.join("; "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[f64]) -> Samples {
        let mut s = Samples::default();
        v.iter().for_each(|x| s.push(*x));
        s
    }

    #[test]
    fn better_follows_the_unit() {
        let time = Row::new("t", Unit::Millis, samples(&[10.0]), Some(samples(&[20.0])));
        assert_eq!(time.better(), "berthd");
        let speed = Row::new(
            "s",
            Unit::MegabytesPerSecond,
            samples(&[10.0]),
            Some(samples(&[20.0])),
        );
        assert_eq!(speed.better(), "dockerd");
        assert!(speed.berth_worse());
        let tie = Row::new("e", Unit::Millis, samples(&[100.0]), Some(samples(&[98.0])));
        assert_eq!(tie.better(), "≈");
        let alone = Row::new("a", Unit::Millis, samples(&[1.0]), None);
        assert_eq!(alone.better(), "—");
    }

    #[test]
    fn markdown_has_a_row_per_measurement() {
        let d = DriverReport {
            driver: "btrfs".into(),
            storage: "x".into(),
            rows: vec![Row::new(
                "docker create",
                Unit::Millis,
                samples(&[1.0, 2.0, 3.0]),
                Some(samples(&[2.0, 4.0, 6.0])),
            )],
            notes: vec![],
            minutes: 1.0,
        };
        let md = markdown(&Context::default(), &[d]);
        assert!(
            md.contains(
                "| docker create | ms | 2.00 [1.00–3.00] | 4.00 [2.00–6.00] | 0.50 | berthd | 3 |"
            ),
            "{md}"
        );
    }
}
