//! Hosts of their own on one machine, for tests that cut links between
//! processes: one network namespace per host, joined by a bridge that lives
//! in a namespace of its own (the machine's firewall drops traffic bridged
//! in the root namespace), plus a veth from the root namespace so the test
//! process itself reaches every host.
//!
//! A link is cut with blackhole routes on both ends (`ip route add
//! blackhole`), so neither host sends the other anything while both still
//! reach every other host; healing removes them. Everything is made with
//! iproute2's `ip` (installed by `ops/scripts/test`) and removed on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

use sluice_bench::procs::Host;

/// The bridge's name inside the switch namespace.
const BRIDGE: &str = "sbr";

/// A private network of `hosts` namespaces on subnet `10.213.N.0/24`.
#[derive(Debug)]
pub struct Net {
    /// Prefix of every namespace and interface name (unique per network).
    prefix: String,
    subnet: u32,
    hosts: usize,
    created: Vec<String>,
    root_veth: Option<String>,
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2; ops/scripts/test installs it)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Net {
    /// Creates the namespaces and links; fails with the reason (e.g. not
    /// root) if the machine does not allow it.
    pub fn create(hosts: usize) -> Result<Self> {
        assert!((1..=200).contains(&hosts), "1..=200 hosts");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Distinct per process and per call, so parallel tests never meet;
        // a name left over by a killed run is skipped.
        let mut attempt = 0;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let subnet = (std::process::id().wrapping_mul(7919).wrapping_add(n * 31)) % 250 + 1;
            let prefix = format!("sl{subnet}x{}", n % 10);
            let mut net = Self {
                prefix,
                subnet,
                hosts,
                created: Vec::new(),
                root_veth: None,
            };
            match net.build() {
                Ok(()) => return Ok(net),
                Err(e) if attempt < 20 && e.to_string().contains("File exists") => {
                    attempt += 1;
                    drop(net);
                }
                Err(e) => return Err(e.context(
                    "creating network namespaces for a partition test (needs root and iproute2)",
                )),
            }
        }
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    fn ns(&self, host: usize) -> String {
        format!("{}h{host}", self.prefix)
    }

    fn build(&mut self) -> Result<()> {
        let sw = self.switch();
        ip(&["netns", "add", &sw])?;
        self.created.push(sw.clone());
        // `name` spelled out: a bare "br" would be read as `broadcast`.
        ip(&["-n", &sw, "link", "add", "name", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", BRIDGE, "up"])?;
        for host in 0..self.hosts {
            let ns = self.ns(host);
            ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            let (inner, outer) = (
                format!("{}a{host}", self.prefix),
                format!("{}b{host}", self.prefix),
            );
            ip(&[
                "-n", &ns, "link", "add", "name", &inner, "type", "veth", "peer", "name", &outer,
                "netns", &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &outer, "master", BRIDGE, "up"])?;
            let addr = format!("{}/24", self.ip(host));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let (root, outer) = (format!("{}r", self.prefix), format!("{}rb", self.prefix));
        ip(&[
            "link", "add", "name", &root, "type", "veth", "peer", "name", &outer, "netns", &sw,
        ])?;
        self.root_veth = Some(root.clone());
        ip(&["-n", &sw, "link", "set", &outer, "master", BRIDGE, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.213.{}.254/24", self.subnet),
            "dev",
            &root,
        ])?;
        ip(&["link", "set", &root, "up"])?;
        Ok(())
    }

    /// Host `host`'s address.
    pub fn ip(&self, host: usize) -> String {
        format!("10.213.{}.{}", self.subnet, host + 1)
    }

    /// Host `host` as the process launchers take it.
    pub fn host(&self, host: usize) -> Host {
        Host {
            ip: self.ip(host),
            exec: vec!["ip".into(), "netns".into(), "exec".into(), self.ns(host)],
        }
    }

    /// A command that runs `program` on host `host`.
    pub fn command(&self, host: usize, program: &std::path::Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).arg(program);
        cmd
    }

    /// Cuts the link between hosts `a` and `b` (both directions).
    pub fn cut(&self, a: usize, b: usize) -> Result<()> {
        self.blackholes("add", a, b)
    }

    /// Restores the link between hosts `a` and `b`.
    pub fn heal(&self, a: usize, b: usize) -> Result<()> {
        self.blackholes("del", a, b)
    }

    /// Adds or deletes the blackhole routes between `a` and `b` on both.
    fn blackholes(&self, action: &str, a: usize, b: usize) -> Result<()> {
        for (from, to) in [(a, b), (b, a)] {
            let target = format!("{}/32", self.ip(to));
            ip(&["-n", &self.ns(from), "route", action, "blackhole", &target])?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(root) = self.root_veth.take() {
            let _ = ip(&["link", "del", &root]);
        }
        for ns in self.created.drain(..).rev() {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}
