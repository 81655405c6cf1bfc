//! Bench output: the terminal table, `.hgrm` files and the JSON summary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::recorder::{LatencySummary, Recorder};

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
    pub hgrm: Option<String>,
}

/// Everything one `sluice bench` run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub suite: String,
    pub started_at_unix_s: u64,
    pub machine: Machine,
    pub scenarios: Vec<ScenarioResult>,
    pub notes: Vec<String>,
}

/// Collects scenario results and writes them to an output directory.
#[derive(Debug)]
pub struct Report {
    out_dir: PathBuf,
    summary: Summary,
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
            },
        })
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.summary.notes.push(note.into());
    }

    /// Adds a scenario; writes its histogram as `<name>.hgrm` if given.
    pub fn add(
        &mut self,
        name: &str,
        description: &str,
        latency: Option<&Recorder>,
        ops_per_sec: Option<f64>,
    ) -> Result<()> {
        let mut hgrm = None;
        if let Some(rec) = latency.filter(|r| !r.is_empty()) {
            let file = format!("{name}.hgrm");
            let path = self.out_dir.join(&file);
            std::fs::write(&path, rec.to_hgrm())
                .with_context(|| format!("writing {}", path.display()))?;
            hgrm = Some(file);
        }
        self.summary.scenarios.push(ScenarioResult {
            name: name.to_owned(),
            description: description.to_owned(),
            latency: latency.filter(|r| !r.is_empty()).map(Recorder::summary),
            ops_per_sec,
            per_cpu_second: None,
            hgrm,
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
        });
    }

    /// Writes `summary.json` and returns the summary.
    pub fn finish(self) -> Result<Summary> {
        let path = self.out_dir.join("summary.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&self.summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(self.summary)
    }

    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }
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
