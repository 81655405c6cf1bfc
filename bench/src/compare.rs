//! `sluice bench compare OLD NEW`: two runs' `summary.json` files side by side,
//! each metric's ratio, and the regressions flagged.
//!
//! Scenarios are matched by name. A latency metric regresses when it rose by
//! more than the threshold (default 10 %), a throughput metric when it fell by
//! more than the threshold; the reverse is an improvement, anything in between
//! is the same.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use crate::machine::Machine;
use crate::report::{human_us, ScenarioResult, Summary};

/// Relative change past which a metric counts as regressed or improved.
pub const DEFAULT_THRESHOLD: f64 = 0.10;

/// A compared figure of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    P50,
    P90,
    P99,
    P999,
    Max,
    OpsPerSec,
    PerCpuSecond,
}

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 7] = [
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::P999,
        Metric::Max,
        Metric::OpsPerSec,
        Metric::PerCpuSecond,
    ];

    /// The name in tables, as in the bench's own table.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::Max => "max",
            Metric::OpsPerSec => "ops/s",
            Metric::PerCpuSecond => "per CPU-s",
        }
    }

    /// Throughputs are better higher, latencies lower.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::OpsPerSec | Metric::PerCpuSecond)
    }

    /// The metric's value in a scenario: microseconds for latencies,
    /// operations (events) per second for throughputs.
    pub fn value(self, s: &ScenarioResult) -> Option<f64> {
        let lat = s.latency.as_ref();
        match self {
            Metric::P50 => lat.map(|l| l.p50_us),
            Metric::P90 => lat.map(|l| l.p90_us),
            Metric::P99 => lat.map(|l| l.p99_us),
            Metric::P999 => lat.map(|l| l.p999_us),
            Metric::Max => lat.map(|l| l.max_us),
            Metric::OpsPerSec => s.ops_per_sec,
            Metric::PerCpuSecond => s.per_cpu_second,
        }
    }

    /// A value formatted with its unit.
    pub fn format(self, value: f64) -> String {
        if self.higher_is_better() {
            format!("{value:.0}")
        } else {
            human_us(value)
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a metric's change means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worse by more than the threshold.
    Regression,
    /// Better by more than the threshold.
    Improvement,
    /// Within the threshold.
    Same,
    /// Only one side has the metric, or the old value is zero.
    Incomparable,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improved",
            Verdict::Same => "same",
            Verdict::Incomparable => "n/a",
        }
    }
}

/// One metric of one scenario in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricComparison {
    pub metric: Metric,
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// `new / old`, when both are present and `old` is positive.
    pub ratio: Option<f64>,
    pub verdict: Verdict,
}

/// A scenario present in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioComparison {
    pub name: String,
    /// Latency sample counts (old, new), when both runs have a histogram;
    /// the tail percentiles of a few samples are noisy.
    pub samples: Option<(u64, u64)>,
    /// The metrics at least one run has, in [`Metric::ALL`] order.
    pub metrics: Vec<MetricComparison>,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub path: PathBuf,
    pub suite: String,
    pub started_at_unix_s: u64,
    pub machine: Machine,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub old: Side,
    pub new: Side,
    /// Relative change past which a metric regressed or improved.
    pub threshold: f64,
    /// Scenarios in both runs, in the new run's order.
    pub scenarios: Vec<ScenarioComparison>,
    pub only_in_old: Vec<String>,
    pub only_in_new: Vec<String>,
    /// Differences between the machines that make the figures hard to compare
    /// (cores, CPU model, memory, kernel), e.g. `cores: 8 -> 2`.
    pub machine_differences: Vec<String>,
    /// Anything else worth knowing: different suites, duplicate names.
    pub warnings: Vec<String>,
}

impl Comparison {
    /// Whether any metric regressed; `sluice bench compare` exits non-zero then.
    pub fn has_regressions(&self) -> bool {
        self.count(Verdict::Regression) > 0
    }

    /// `(scenario, metric)` of every regression.
    pub fn regressions(&self) -> impl Iterator<Item = (&ScenarioComparison, &MetricComparison)> {
        self.with_verdict(Verdict::Regression)
    }

    /// `(scenario, metric)` of every improvement.
    pub fn improvements(&self) -> impl Iterator<Item = (&ScenarioComparison, &MetricComparison)> {
        self.with_verdict(Verdict::Improvement)
    }

    /// Number of metrics with a verdict.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.with_verdict(verdict).count()
    }

    /// The metric of a scenario, if both runs have the scenario.
    pub fn metric(&self, scenario: &str, metric: Metric) -> Option<&MetricComparison> {
        self.scenarios
            .iter()
            .find(|s| s.name == scenario)?
            .metrics
            .iter()
            .find(|m| m.metric == metric)
    }

    fn with_verdict(
        &self,
        verdict: Verdict,
    ) -> impl Iterator<Item = (&ScenarioComparison, &MetricComparison)> {
        self.scenarios.iter().flat_map(move |s| {
            s.metrics
                .iter()
                .filter(move |m| m.verdict == verdict)
                .map(move |m| (s, m))
        })
    }
}

/// Compares two runs with the default threshold. Each path is a
/// `summary.json` file or a results directory holding one.
pub fn compare(old: &Path, new: &Path) -> Result<Comparison> {
    compare_with_threshold(old, new, DEFAULT_THRESHOLD)
}

/// Compares two runs; `threshold` is a fraction in `(0, 1)`, e.g. 0.1 for 10 %.
pub fn compare_with_threshold(old: &Path, new: &Path, threshold: f64) -> Result<Comparison> {
    check_threshold(threshold)?;
    let (old_path, old_summary) = load_summary(old)?;
    let (new_path, new_summary) = load_summary(new)?;
    compare_summaries(
        (&old_path, &old_summary),
        (&new_path, &new_summary),
        threshold,
    )
}

/// Reads a `summary.json` (or the one in a results directory); returns the
/// file's path and its contents. Errors name the file and the field.
pub fn load_summary(path: &Path) -> Result<(PathBuf, Summary)> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    let summary: Summary = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field == "." || field.is_empty() {
            anyhow::anyhow!("{}: not a bench summary: {inner}", file.display())
        } else {
            anyhow::anyhow!(
                "{}: bad bench summary at field `{field}`: {inner}",
                file.display()
            )
        }
    })?;
    Ok((file, summary))
}

/// Compares two loaded summaries; each is given with the path it came from.
pub fn compare_summaries(
    (old_path, old): (&Path, &Summary),
    (new_path, new): (&Path, &Summary),
    threshold: f64,
) -> Result<Comparison> {
    check_threshold(threshold)?;
    let mut warnings = Vec::new();
    if old.suite != new.suite {
        warnings.push(format!(
            "different suites: {} (old) vs {} (new)",
            old.suite, new.suite
        ));
    }
    let old_by_name = index(old, old_path, &mut warnings);
    let new_by_name = index(new, new_path, &mut warnings);

    let mut scenarios = Vec::new();
    let mut only_in_new = Vec::new();
    for n in unique(&new.scenarios) {
        match old_by_name.get(n.name.as_str()) {
            Some(o) => scenarios.push(compare_scenario(o, n, threshold)),
            None => only_in_new.push(n.name.clone()),
        }
    }
    let only_in_old = unique(&old.scenarios)
        .filter(|o| !new_by_name.contains_key(o.name.as_str()))
        .map(|o| o.name.clone())
        .collect();

    Ok(Comparison {
        old: side(old_path, old),
        new: side(new_path, new),
        threshold,
        scenarios,
        only_in_old,
        only_in_new,
        machine_differences: machine_differences(&old.machine, &new.machine),
        warnings,
    })
}

fn check_threshold(threshold: f64) -> Result<()> {
    if !(threshold > 0.0 && threshold < 1.0) {
        bail!("the regression threshold must be a fraction in (0, 1), e.g. 0.1 for 10 %, got {threshold}");
    }
    Ok(())
}

fn side(path: &Path, s: &Summary) -> Side {
    Side {
        path: path.to_path_buf(),
        suite: s.suite.clone(),
        started_at_unix_s: s.started_at_unix_s,
        machine: s.machine.clone(),
    }
}

/// Scenarios by name; the first of duplicate names wins, with a warning.
fn index<'a>(
    s: &'a Summary,
    path: &Path,
    warnings: &mut Vec<String>,
) -> HashMap<&'a str, &'a ScenarioResult> {
    let mut by_name = HashMap::new();
    for sc in &s.scenarios {
        if by_name.contains_key(sc.name.as_str()) {
            warnings.push(format!(
                "{}: scenario {} appears more than once; the first is compared",
                path.display(),
                sc.name
            ));
        } else {
            by_name.insert(sc.name.as_str(), sc);
        }
    }
    by_name
}

/// The scenarios, each name once (first occurrence), in file order.
fn unique(scenarios: &[ScenarioResult]) -> impl Iterator<Item = &ScenarioResult> {
    let mut seen = std::collections::HashSet::new();
    scenarios
        .iter()
        .filter(move |s| seen.insert(s.name.as_str()))
}

fn compare_scenario(
    old: &ScenarioResult,
    new: &ScenarioResult,
    threshold: f64,
) -> ScenarioComparison {
    let metrics = Metric::ALL
        .iter()
        .filter_map(|&metric| {
            let (o, n) = (metric.value(old), metric.value(new));
            if o.is_none() && n.is_none() {
                return None;
            }
            Some(compare_metric(metric, o, n, threshold))
        })
        .collect();
    ScenarioComparison {
        name: new.name.clone(),
        samples: old
            .latency
            .zip(new.latency)
            .map(|(o, n)| (o.count, n.count)),
        metrics,
    }
}

/// The verdict on one metric: `new / old` against `1 ± threshold`.
pub fn compare_metric(
    metric: Metric,
    old: Option<f64>,
    new: Option<f64>,
    threshold: f64,
) -> MetricComparison {
    let ratio = match (old, new) {
        (Some(o), Some(n)) if o > 0.0 && o.is_finite() && n.is_finite() => Some(n / o),
        _ => None,
    };
    let verdict = match ratio {
        None => Verdict::Incomparable,
        Some(r) => {
            let (rose, fell) = (r > 1.0 + threshold, r < 1.0 - threshold);
            match (metric.higher_is_better(), rose, fell) {
                (false, true, _) | (true, _, true) => Verdict::Regression,
                (false, _, true) | (true, true, _) => Verdict::Improvement,
                _ => Verdict::Same,
            }
        }
    };
    MetricComparison {
        metric,
        old,
        new,
        ratio,
        verdict,
    }
}

/// Differences in the hardware and kernel (the host name is not one: it
/// changes with every container).
fn machine_differences(old: &Machine, new: &Machine) -> Vec<String> {
    let mut diffs = Vec::new();
    if old.cores != new.cores {
        diffs.push(format!("cores: {} -> {}", old.cores, new.cores));
    }
    if old.cpu_model != new.cpu_model {
        diffs.push(format!("CPU: {} -> {}", old.cpu_model, new.cpu_model));
    }
    if old.memory_bytes != new.memory_bytes {
        diffs.push(format!(
            "memory: {} -> {}",
            gib(old.memory_bytes),
            gib(new.memory_bytes)
        ));
    }
    if old.kernel != new.kernel {
        diffs.push(format!("kernel: {} -> {}", old.kernel, new.kernel));
    }
    diffs
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// A machine in one line.
pub fn describe_machine(m: &Machine) -> String {
    format!(
        "{} cores, {}, {} RAM, kernel {}, host {}",
        m.cores,
        m.cpu_model,
        gib(m.memory_bytes),
        m.kernel,
        if m.hostname.is_empty() {
            "unknown"
        } else {
            &m.hostname
        }
    )
}

/// The comparison table: one row per metric of each scenario in both runs.
pub fn comparison_table(c: &Comparison) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "scenario", "metric", "old", "new", "new/old", "change", "verdict",
    ]);
    for s in &c.scenarios {
        for m in &s.metrics {
            let value = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| m.metric.format(v));
            let (ratio, change) = m.ratio.map_or_else(
                || ("-".to_owned(), "-".to_owned()),
                |r| (format!("{r:.2}x"), format!("{:+.1}%", (r - 1.0) * 100.0)),
            );
            let verdict = Cell::new(match m.verdict {
                Verdict::Regression => format!("<< {}", m.verdict.label()),
                _ => m.verdict.label().to_owned(),
            });
            let verdict = match m.verdict {
                Verdict::Regression => verdict.fg(Color::Red),
                Verdict::Improvement => verdict.fg(Color::Green),
                _ => verdict,
            };
            t.add_row(vec![
                Cell::new(&s.name),
                Cell::new(m.metric.name()),
                Cell::new(value(m.old)).set_alignment(CellAlignment::Right),
                Cell::new(value(m.new)).set_alignment(CellAlignment::Right),
                Cell::new(ratio).set_alignment(CellAlignment::Right),
                Cell::new(change).set_alignment(CellAlignment::Right),
                verdict,
            ]);
        }
    }
    t
}

/// The whole comparison as text: both runs and machines, warnings, the table,
/// scenarios only in one run, and a closing verdict line.
pub fn render_comparison(c: &Comparison) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (label, side) in [("old", &c.old), ("new", &c.new)] {
        let _ = writeln!(
            out,
            "{label}: {} (suite {}, started at unix {})",
            side.path.display(),
            side.suite,
            side.started_at_unix_s
        );
        let _ = writeln!(out, "     {}", describe_machine(&side.machine));
    }
    if !c.machine_differences.is_empty() {
        let _ = writeln!(
            out,
            "WARNING: the runs are from different machines ({}); ratios mix code and hardware changes",
            c.machine_differences.join("; ")
        );
    }
    for w in &c.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    if c.scenarios.is_empty() {
        let _ = writeln!(out, "no scenario is in both runs");
    } else {
        let _ = writeln!(out, "{}", comparison_table(c));
    }
    for (label, names) in [
        ("only in old", &c.only_in_old),
        ("only in new", &c.only_in_new),
    ] {
        if !names.is_empty() {
            let _ = writeln!(out, "{label}: {}", names.join(", "));
        }
    }
    let few: Vec<_> = c
        .scenarios
        .iter()
        .filter(|s| s.samples.is_some_and(|(o, n)| o.min(n) < 1000))
        .map(|s| s.name.as_str())
        .collect();
    if !few.is_empty() {
        let _ = writeln!(
            out,
            "note: fewer than 1000 latency samples in {}: their tail percentiles are noisy",
            few.join(", ")
        );
    }
    let regressions = c.count(Verdict::Regression);
    let _ = write!(
        out,
        "{regressions} regression(s), {} improvement(s), {} unchanged, threshold {:.0}%",
        c.count(Verdict::Improvement),
        c.count(Verdict::Same),
        c.threshold * 100.0
    );
    if regressions > 0 {
        let list: Vec<_> = c
            .regressions()
            .map(|(s, m)| {
                let r = m.ratio.unwrap_or(f64::NAN);
                format!("{} {} {r:.2}x", s.name, m.metric)
            })
            .collect();
        let _ = write!(out, "\nREGRESSED: {}", list.join(", "));
    }
    out.push('\n');
    out
}

/// Prints [`render_comparison`] to stdout.
pub fn print_comparison(c: &Comparison) {
    print!("{}", render_comparison(c));
}
