//! The `sluice` binary as a user first meets it.

use std::process::Command;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// A `sluice dev --base-port` whose ports (masters' API and Raft, the
/// agents' data ports) are free now, below the kernel's ephemeral range so
/// outgoing connections of parallel tests cannot take them meanwhile.
fn free_base_port() -> u16 {
    let offsets: Vec<u16> = [1, 2, 3, 11, 12, 13].into_iter().chain(200..240).collect();
    // Tests of one process ask in turn, each from its own starting point.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = 10_000 + ((std::process::id() % 1000) as u16 * 20 + call * 4_000) % 20_000;
    (0..1000u16)
        .map(|i| 10_000 + (start - 10_000 + i * 241) % 20_000)
        .find(|base| {
            offsets
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
        })
        .expect("no free port range for sluice dev")
}

#[test]
fn help_lists_every_built_command_group() {
    let out = sluice().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for group in [
        "dev", "master", "run", "cluster", "bench", "agent", "role", "job",
    ] {
        assert!(text.contains(group), "--help lacks {group}:\n{text}");
    }
    for sub in [
        ["cluster", "--help"],
        ["bench", "--help"],
        ["master", "--help"],
        ["agent", "--help"],
        ["job", "--help"],
        ["role", "--help"],
    ] {
        let out = sluice().args(sub).output().unwrap();
        assert!(out.status.success(), "{sub:?}");
    }
}

#[test]
fn unknown_commands_and_missing_flags_fail_clearly() {
    let out = sluice().arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
    let out = sluice()
        .args(["master", "--id", "1"])
        .env_remove("SLUICE_RAFT_ADDR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--raft-addr"), "{err}");
    let out = sluice()
        .args(["agent", "--masters", "127.0.0.1:1"])
        .env_remove("SLUICE_AGENT_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--data-dir"), "{err}");
    let out = sluice()
        .args(["agent", "--data-dir", "/tmp/x", "--cores", "3-1"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success() && err.contains("--cores"), "{err}");
}

#[test]
fn dev_forms_a_cluster_prints_its_status_and_stops() {
    let base = free_base_port();
    let out = sluice()
        .args(["dev", "--once", "--base-port", &base.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("leader:"), "{stdout}");
    assert_eq!(stdout.matches("follower").count(), 2, "{stdout}");
    assert!(stdout.contains("agent 0 registered"), "{stdout}");
    assert!(
        stdout.contains("demo job 0 (dev-demo) running on agents [0]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stopping 1 agents and 3 masters"),
        "{stdout}"
    );
}

#[test]
fn run_executes_a_job_spec_and_rejects_a_bad_one_with_its_position() {
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/examples/jobs/wordcount.toml"
    );
    let out = sluice().args(["run", spec]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "a rose is a rose" + "is a rose", upper-cased, "A" dropped, counted per word.
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [r#"{"word":"IS","n":2}"#, r#"{"word":"ROSE","n":3}"#]
    );

    // The same answer with the counts in RocksDB, whose scratch is gone afterwards.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = sluice()
        .args(["run", "--state-backend", "rocksdb", "--state-dir"])
        .arg(&state)
        .arg(spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut on_rocksdb: Vec<&str> = stdout.lines().collect();
    on_rocksdb.sort_unstable();
    assert_eq!(on_rocksdb, lines);
    let left = std::fs::read_dir(&state).map_or(0, |d| d.count());
    assert_eq!(left, 0, "RocksDB scratch left in {}", state.display());

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[[operator]]\nfilter = \"price >\"\n").unwrap();
    let out = sluice().arg("run").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("line"), "{err}");
}

/// Kills the child on drop, so a failed assertion leaves no cluster behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Retries `sluice ARGS` (with `env`) until `ok` accepts its stdout or 30 s pass.
fn eventually(env: &[(String, String)], args: &[&str], ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = sluice()
            .envs(env.iter().cloned())
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && ok(&stdout) {
            return stdout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`sluice {}` never gave what was expected; last stdout:\n{stdout}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The environment `sluice dev --data-dir DIR` tells its user to export:
/// the client certificate and the management token.
fn dev_env(dir: &std::path::Path) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let token_file = dir.join("management.token");
    let token = loop {
        match std::fs::read_to_string(&token_file) {
            Ok(token) if token.ends_with('\n') => break token.trim().to_owned(),
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            _ => panic!("sluice dev wrote no {}", token_file.display()),
        }
    };
    let tls = dir.join("tls");
    let path = |name: &str| tls.join(name).to_string_lossy().into_owned();
    vec![
        ("SLUICE_TLS_CA".into(), path("ca.pem")),
        ("SLUICE_TLS_CERT".into(), path("client.pem")),
        ("SLUICE_TLS_KEY".into(), path("client-key.pem")),
        ("SLUICE_TOKEN".into(), token),
    ]
}

/// `sluice dev` runs with mutual TLS and ACLs on: the CLI needs the client
/// certificate and the token it printed; agents, with their own certificate
/// and token, register and run a task whose logs the CLI reads from the
/// agent over TLS.
#[test]
fn task_logs_are_fetched_from_the_agent_through_the_cli() {
    let base = free_base_port();
    let dir = tempfile::tempdir().unwrap();
    let _dev = Child(
        sluice()
            .args([
                "dev",
                "--no-demo",
                "--base-port",
                &base.to_string(),
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let env = dev_env(dir.path());
    let masters = format!("127.0.0.1:{}", base + 1);
    let m = ["--masters", masters.as_str()];
    eventually(&env, &["agent", "list", m[0], m[1]], |out| {
        out.contains("dev-agent-0")
    });
    // Without the token, or without TLS, nothing is read.
    let no_token: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != "SLUICE_TOKEN")
        .cloned()
        .collect();
    let out = sluice()
        .envs(no_token)
        .args(["agent", "list", m[0], m[1]])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no ACL token given"),
        "{err}"
    );
    let out = sluice()
        .args(["agent", "list", m[0], m[1], "--timeout-ms", "2000"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "plain text reached a TLS master");
    let submit = [
        "job",
        "submit",
        "--cpus",
        "1",
        "--memory",
        "64MiB",
        m[0],
        m[1],
        "--",
        "sh",
        "-c",
        "echo one; echo oops >&2; sleep 1; echo two",
    ];
    eventually(&env, &submit, |out| out.contains("job 0 submitted"));
    let followed = eventually(
        &env,
        &["task", "logs", "0.0", "--follow", m[0], m[1]],
        |_| true,
    );
    assert_eq!(followed, "one\ntwo\n");
    let stderr = eventually(&env, &["task", "logs", "0", "--stderr", m[0], m[1]], |_| {
        true
    });
    assert_eq!(stderr, "oops\n");
    let tail = eventually(
        &env,
        &["task", "logs", "0", "--tail", "4", m[0], m[1]],
        |_| true,
    );
    assert_eq!(tail, "two\n");
    let out = sluice()
        .envs(env.iter().cloned())
        .args(["task", "logs", "7.0", m[0], m[1]])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown job 7"));
}

/// A refused connection fails at once with the OS's reason, not after the
/// whole request timeout.
#[test]
fn a_refused_connection_fails_fast_with_the_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let out = sluice()
        .args(["job", "list", "--masters", &format!("127.0.0.1:{port}")])
        .args(["--timeout-ms", "10000"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}: {err}"
    );
}

/// An address that answers, but not gRPC (an HTTP/1 server here), is named
/// for what it is.
#[test]
fn a_non_grpc_server_is_reported_as_not_an_api_endpoint() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    let out = sluice()
        .args(["job", "list", "--masters", &addr.to_string()])
        .args(["--timeout-ms", "5000"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a Sluice master API endpoint"), "{err}");
}
