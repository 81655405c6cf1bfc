//! Bench output: the terminal table, `.hgrm` files, SVG percentile plots,
//! the JSON summary, and a progress indicator for the suites.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::plot::{self, Series};
use crate::recorder::{LatencySummary, PercentilePoint, Recorder};

/// One measured scenario: a latency histogram and/or a throughput.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioResult {
    /// Dotted name, e.g. `raft.commit.grpc.c64`; also the `.hgrm` file's stem.
    pub name: String,
    /// What was measured, in a sentence.
    pub description: String,
    pub latency: Option<LatencySummary>,
    /// Operations per wall-clock second, when meaningful.
    pub ops_per_sec: Option<f64>,
    /// Events per CPU-second of the threads doing the work (getrusage), for
    /// per-core throughput comparisons.
    #[serde(default)]
    pub per_cpu_second: Option<f64>,
    /// Relative path of the `.hgrm` file, if a histogram was written.
    #[serde(default)]
    pub hgrm: Option<String>,
    /// Relative path of the SVG percentile plot, if a histogram was written.
    #[serde(default)]
    pub plot: Option<String>,
}

/// A plot overlaying the percentile curves of related scenarios.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverlayPlot {
    /// Relative path of the SVG file, `<family>.overlay.svg`.
    pub file: String,
    /// The shared name prefix, e.g. `raft.commit`.
    pub family: String,
    /// The scenarios drawn, in the order they were added.
    pub scenarios: Vec<String>,
}

/// Everything one `sluice bench` run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub suite: String,
    pub started_at_unix_s: u64,
    pub machine: Machine,
    pub scenarios: Vec<ScenarioResult>,
    pub notes: Vec<String>,
    /// Combined plots of related scenarios (absent from older summaries).
    #[serde(default)]
    pub overlays: Vec<OverlayPlot>,
}

/// Collects scenario results and writes them to an output directory.
#[derive(Debug)]
pub struct Report {
    out_dir: PathBuf,
    summary: Summary,
    /// Percentile curves of the scenarios with a histogram, by name, for the
    /// overlay plots written by [`Report::finish`].
    curves: Vec<(String, Vec<PercentilePoint>)>,
}

impl Report {
    pub fn new(suite: &str, out_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        let started_at_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            out_dir: out_dir.to_path_buf(),
            summary: Summary {
                suite: suite.to_owned(),
                started_at_unix_s,
                machine: Machine::describe(),
                scenarios: Vec::new(),
                notes: Vec::new(),
                overlays: Vec::new(),
            },
            curves: Vec::new(),
        })
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.summary.notes.push(note.into());
    }

    /// Adds a scenario; if a non-empty histogram is given, writes it as
    /// `<name>.hgrm` and its percentile plot as `<name>.svg`.
    pub fn add(
        &mut self,
        name: &str,
        description: &str,
        latency: Option<&Recorder>,
        ops_per_sec: Option<f64>,
    ) -> Result<()> {
        let mut hgrm = None;
        let mut plot = None;
        if let Some(rec) = latency.filter(|r| !r.is_empty()) {
            let file = format!("{name}.hgrm");
            let path = self.out_dir.join(&file);
            std::fs::write(&path, rec.to_hgrm())
                .with_context(|| format!("writing {}", path.display()))?;
            hgrm = Some(file);

            let curve = rec.percentile_curve();
            let file = format!("{name}.svg");
            let title = format!("{name}: latency by percentile ({} samples)", rec.len());
            plot::write_percentile_svg(
                &self.out_dir.join(&file),
                &title,
                &[Series {
                    label: name,
                    points: &curve,
                }],
            )?;
            plot = Some(file);
            self.curves.push((name.to_owned(), curve));
        }
        self.summary.scenarios.push(ScenarioResult {
            name: name.to_owned(),
            description: description.to_owned(),
            latency: latency.filter(|r| !r.is_empty()).map(Recorder::summary),
            ops_per_sec,
            per_cpu_second: None,
            hgrm,
            plot,
        });
        Ok(())
    }

    /// Adds a throughput scenario measured in events per CPU-second.
    pub fn add_throughput(
        &mut self,
        name: &str,
        description: &str,
        per_sec: f64,
        per_cpu_second: f64,
    ) {
        self.summary.scenarios.push(ScenarioResult {
            name: name.to_owned(),
            description: description.to_owned(),
            latency: None,
            ops_per_sec: Some(per_sec),
            per_cpu_second: Some(per_cpu_second),
            hgrm: None,
            plot: None,
        });
    }

    /// Writes the overlay plots (one per family of two or more scenarios
    /// with histograms, see [`plot_family`]) and `summary.json`, and returns
    /// the summary.
    pub fn finish(mut self) -> Result<Summary> {
        let mut families: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (name, _)) in self.curves.iter().enumerate() {
            families.entry(plot_family(name)).or_default().push(i);
        }
        for (family, members) in families.into_iter().filter(|(_, m)| m.len() > 1) {
            let file = format!("{family}.overlay.svg");
            let series: Vec<Series<'_>> = members
                .iter()
                .map(|&i| Series {
                    label: &self.curves[i].0,
                    points: &self.curves[i].1,
                })
                .collect();
            plot::write_percentile_svg(
                &self.out_dir.join(&file),
                &format!("{family}.*: latency by percentile"),
                &series,
            )?;
            self.summary.overlays.push(OverlayPlot {
                file,
                family,
                scenarios: members.iter().map(|&i| self.curves[i].0.clone()).collect(),
            });
        }
        let path = self.out_dir.join("summary.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&self.summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(self.summary)
    }

    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }
}

/// The family a scenario's curve is overlaid with: its first two dotted
/// parts, so `raft.commit.grpc.c64` joins `raft.commit` and
/// `engine.e2e.tcp.r10000` joins `engine.e2e`.
pub fn plot_family(name: &str) -> String {
    name.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// `given`, or `bench-results/<suite>-<unix time>`.
pub fn out_dir_or_default(given: Option<&Path>, suite: &str) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("bench-results/{suite}-{unix}"))
    })
}

/// The terminal table of a summary.
pub fn table(summary: &Summary) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "scenario",
        "count",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "ops/s",
        "per CPU-s",
    ]);
    for s in &summary.scenarios {
        let lat = |f: fn(&LatencySummary) -> f64| {
            s.latency
                .as_ref()
                .map_or_else(|| "-".to_owned(), |l| human_us(f(l)))
        };
        t.add_row(vec![
            s.name.clone(),
            s.latency
                .map_or_else(|| "-".to_owned(), |l| l.count.to_string()),
            lat(|l| l.p50_us),
            lat(|l| l.p90_us),
            lat(|l| l.p99_us),
            lat(|l| l.p999_us),
            lat(|l| l.max_us),
            s.ops_per_sec
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
            s.per_cpu_second
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
        ]);
    }
    t
}

/// Formats microseconds with a unit that keeps 3–4 digits.
pub fn human_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// Progress lines on stderr while a suite runs:
/// `[3/7] raft commits, 64 clients ...` when a step starts and
/// `[3/7] raft commits, 64 clients done in 5.1 s (total 12.4 s)` when it ends.
///
/// Plain lines, no terminal control codes, so it reads the same in a log file
/// and interleaves cleanly with what the steps print themselves.
pub struct Progress {
    suite: String,
    total: usize,
    done: usize,
    started: Instant,
    current: Option<(String, Instant)>,
    out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("suite", &self.suite)
            .field("total", &self.total)
            .field("done", &self.done)
            .field("current", &self.current.as_ref().map(|(name, _)| name))
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// A progress indicator for `total` steps, printing to stderr.
    pub fn new(suite: &str, total: usize) -> Self {
        Self::with_writer(suite, total, Box::new(std::io::stderr()))
    }

    /// Same as [`Progress::new`], printing to `out`.
    pub fn with_writer(suite: &str, total: usize, out: Box<dyn Write + Send>) -> Self {
        Self {
            suite: suite.to_owned(),
            total,
            done: 0,
            started: Instant::now(),
            current: None,
            out,
        }
    }

    /// Changes the expected number of steps (when it is known only later).
    pub fn set_total(&mut self, total: usize) {
        self.total = total;
    }

    /// Ends the current step, if any, and starts the next one.
    pub fn step(&mut self, name: impl Into<String>) {
        self.end_step();
        let name = name.into();
        let n = self.done + 1;
        let total = self.total.max(n);
        self.line(format_args!("[{n}/{total}] {name} ..."));
        self.current = Some((name, Instant::now()));
    }

    /// Ends the current step and prints the suite's total time.
    pub fn finish(mut self) {
        self.end_step();
        let elapsed = self.started.elapsed().as_secs_f64();
        let (suite, done) = (self.suite.clone(), self.done);
        let steps = if done == 1 { "step" } else { "steps" };
        self.line(format_args!("{suite}: {done} {steps} in {elapsed:.1} s"));
    }

    /// Steps ended so far.
    pub fn done(&self) -> usize {
        self.done
    }

    fn end_step(&mut self) {
        if let Some((name, started)) = self.current.take() {
            self.done += 1;
            let n = self.done;
            let total = self.total.max(n);
            let took = started.elapsed().as_secs_f64();
            let elapsed = self.started.elapsed().as_secs_f64();
            self.line(format_args!(
                "[{n}/{total}] {name} done in {took:.1} s (total {elapsed:.1} s)"
            ));
        }
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        // Progress is best effort: a closed stderr must not fail the bench.
        let _ = writeln!(self.out, "{args}");
        let _ = self.out.flush();
    }
}
