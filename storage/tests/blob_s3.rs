//! Checkpoint blob stores held to one contract: `S3Store` against a real S3-compatible
//! server (moto's, started here on a free loopback port) and `DirStore` in a temporary
//! directory run the same checks (`check_contract`), and the S3 store is checked for what
//! only a remote store can do wrong: a missing bucket, an endpoint that refuses connections
//! and one that accepts them and never answers.
//!
//! moto's server comes from PyPI (`moto[server]`); `ops/scripts/test` installs it. Without it
//! these tests fail with the command to run, never skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sluice_storage::blob::{self, BlobError, BlobStore, S3Settings, S3Store};

const MOTO_INSTALL: &str = "python3 -m pip install 'moto[server]'";
/// How long moto's server may take to start listening.
const MOTO_START_TIMEOUT_MS: u64 = 60_000;
/// Keys per list page for the S3 store under test: small, so listings span several pages.
const LIST_PAGE_KEYS: usize = 7;
/// Blobs put under one checkpoint in `check_contract`: several pages' worth.
const LIST_BLOBS: usize = 23;
const _: () = assert!(LIST_BLOBS > 3 * LIST_PAGE_KEYS);

/// A moto server on a loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Moto {
    fn start() -> Self {
        let probe = Command::new("python3")
            .args(["-c", "import moto.server"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "moto's server is not installed ({}); install it with: {MOTO_INSTALL} \
                 (ops/scripts/test does)",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("no error output")
            ),
            Err(e) => {
                panic!("python3 cannot be run ({e}); install Python 3 and then: {MOTO_INSTALL}")
            }
        }
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto's server: {e}"));
        let mut moto = Self { child, port, log };
        moto.wait_listening();
        moto
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(MOTO_START_TIMEOUT_MS);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "moto's server exited ({status}) before listening: {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto's server did not listen on port {} within {MOTO_START_TIMEOUT_MS} ms: {}",
                self.port,
                self.log()
            );
            // Polls the port; the deadline above bounds the wait.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Settings as the environment would give them for this server.
    fn settings(&self) -> S3Settings {
        settings_for(&self.endpoint()).with_list_page_keys(LIST_PAGE_KEYS)
    }

    /// Sends one unsigned request (moto does not check signatures by default) and returns
    /// the status code and the body.
    fn http(&self, method: &str, target: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.http("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "creating bucket {bucket}: {body}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn settings_for(endpoint: &str) -> S3Settings {
    let vars = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    S3Settings::from_vars(vars.map(|(k, v)| (k.to_owned(), v.to_owned())))
}

/// Runs `op` on another thread and fails the test if it has not returned by `deadline_ms`,
/// so a store that hangs fails here instead of hanging the suite.
fn within<T: Send + 'static>(deadline_ms: u64, op: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(op());
    });
    rx.recv_timeout(Duration::from_millis(deadline_ms))
        .unwrap_or_else(|_| panic!("the operation did not return within {deadline_ms} ms"))
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths
}

/// What every blob store does, whatever it stores in.
fn check_contract(store: &dyn BlobStore) {
    let url = store.url();

    // Round trip, then replace.
    store.put("job-1/chk-1/shard-0", b"first").unwrap();
    assert_eq!(store.get("job-1/chk-1/shard-0").unwrap(), b"first");
    store
        .put("job-1/chk-1/shard-0", b"second, and longer")
        .unwrap();
    assert_eq!(
        store.get("job-1/chk-1/shard-0").unwrap(),
        b"second, and longer"
    );
    store.put("job-1/chk-1/shard-0", b"3").unwrap();
    assert_eq!(store.get("job-1/chk-1/shard-0").unwrap(), b"3");

    // Empty and large blobs come back byte for byte.
    store.put("job-1/chk-1/empty", b"").unwrap();
    assert_eq!(store.get("job-1/chk-1/empty").unwrap(), b"");
    let large: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    store.put("job-1/chk-1/large", &large).unwrap();
    assert!(store.get("job-1/chk-1/large").unwrap() == large, "{url}");

    // A sealed checkpoint file survives the trip and still unseals.
    let payload = b"operator state \x00\xff\x10".repeat(100);
    store
        .put("job-1/chk-1/_metadata", &blob::seal(&payload))
        .unwrap();
    let sealed = store.get("job-1/chk-1/_metadata").unwrap();
    assert_eq!(
        blob::unseal("job-1/chk-1/_metadata", &sealed).unwrap(),
        payload.as_slice()
    );

    // Listing: several pages, and a prefix is a path prefix (`job-1/` is not `job-10/`).
    let mut chk2: Vec<String> = (0..LIST_BLOBS)
        .map(|i| format!("job-1/chk-2/shard-{i}"))
        .collect();
    for path in &chk2 {
        store.put(path, path.as_bytes()).unwrap();
    }
    store.put("job-10/chk-1/shard-0", b"x").unwrap();
    store.put("job-2/chk-1/shard-0", b"y").unwrap();
    chk2.sort();
    assert_eq!(sorted(store.list("job-1/chk-2/").unwrap()), chk2, "{url}");
    let mut job1 = chk2.clone();
    job1.extend(
        ["empty", "large", "_metadata", "shard-0"].map(|name| format!("job-1/chk-1/{name}")),
    );
    job1.sort();
    assert_eq!(sorted(store.list("job-1/").unwrap()), job1, "{url}");
    let mut all = job1.clone();
    all.extend(["job-10/chk-1/shard-0".into(), "job-2/chk-1/shard-0".into()]);
    all.sort();
    assert_eq!(sorted(store.list("").unwrap()), all, "{url}");
    assert!(store.list("job-3/").unwrap().is_empty(), "{url}");

    // Delete; deleting again, or what never was, is not an error.
    store.delete("job-1/chk-2/shard-0").unwrap();
    store.delete("job-1/chk-2/shard-0").unwrap();
    store.delete("job-9/never/was").unwrap();
    assert!(!store
        .list("job-1/chk-2/")
        .unwrap()
        .contains(&"job-1/chk-2/shard-0".to_owned()));
    assert_eq!(store.list("job-1/chk-2/").unwrap().len(), LIST_BLOBS - 1);

    // What is not there is NotFound, naming the store and the path.
    for path in ["job-1/chk-2/shard-0", "job-1/chk-9/_metadata"] {
        match store.get(path) {
            Err(e @ BlobError::NotFound { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&url) && text.contains(path), "{text}");
            }
            other => panic!("{url}: get {path}: {other:?}, expected NotFound"),
        }
    }

    // Paths that could escape the store's root are refused.
    for path in ["../escape", "/abs", "a//b", ""] {
        assert!(store.put(path, b"x").is_err(), "{url}: put {path:?}");
    }
}

#[test]
fn dir_store_keeps_the_blob_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = blob::open(&format!("file://{}", dir.path().join("chk").display())).unwrap();
    check_contract(store.as_ref());
}

#[test]
fn s3_store_keeps_the_blob_store_contract_on_a_real_s3_server() {
    let moto = Moto::start();
    moto.create_bucket("sluice-ckpt");

    let store = S3Store::open("s3://sluice-ckpt/prod/checkpoints/", &moto.settings()).unwrap();
    assert_eq!(store.url(), "s3://sluice-ckpt/prod/checkpoints");
    check_contract(&store);

    // Blobs are objects under the URL's prefix, and the server honours the small page size,
    // so the listings above really spanned several pages.
    let (status, body) = moto.http(
        "GET",
        &format!(
            "/sluice-ckpt?list-type=2&prefix={}&max-keys={LIST_PAGE_KEYS}",
            "prod/checkpoints/job-1/chk-2/"
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<IsTruncated>true</IsTruncated>"), "{body}");
    assert_eq!(body.matches("<Key>").count(), LIST_PAGE_KEYS, "{body}");
    assert!(
        body.contains("<Key>prod/checkpoints/job-1/chk-2/shard-1</Key>"),
        "{body}"
    );

    // A store without a prefix sees every key of the bucket, the first store's among them.
    let root = S3Store::open("s3://sluice-ckpt", &moto.settings()).unwrap();
    root.put("other/blob", b"o").unwrap();
    assert_eq!(
        root.get("prod/checkpoints/job-1/chk-1/shard-0").unwrap(),
        b"3"
    );
    assert!(!store.list("").unwrap().iter().any(|p| p.contains("other")));

    // An agent task may call the blocking API from inside a runtime, and drop the last
    // handle there; neither panics.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        assert_eq!(root.get("other/blob").unwrap(), b"o");
        drop(root);
    });
}

#[test]
fn a_missing_bucket_is_named_and_is_not_a_missing_blob() {
    let moto = Moto::start();
    let store = S3Store::open("s3://no-such-bucket/p", &moto.settings()).unwrap();
    for result in [
        store.put("job-1/chk-1/_metadata", b"x").map(|_| ()),
        store.get("job-1/chk-1/_metadata").map(|_| ()),
        store.list("job-1/").map(|_| ()),
    ] {
        match result {
            Err(e @ BlobError::Io { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("s3://no-such-bucket/p") && text.contains("does not exist"),
                    "{text}"
                );
            }
            other => panic!("{other:?}, expected an Io error naming the missing bucket"),
        }
    }
}

#[test]
fn an_unreachable_store_fails_within_the_timeout_naming_the_store() {
    let timeout = Duration::from_millis(1_500);
    // A port nothing listens on refuses connections; a listener that never accepts takes
    // them into its backlog and never answers.
    let closed = free_port();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for (port, what) in [(closed, "could not reach"), (silent_port, "no answer")] {
        let settings = settings_for(&format!("http://127.0.0.1:{port}")).with_op_timeout(timeout);
        let store = S3Store::open("s3://sluice-ckpt/unreachable", &settings).unwrap();
        let started = Instant::now();
        let err = within(60_000, move || store.put("job-1/chk-1/shard-0", b"x")).unwrap_err();
        let elapsed = started.elapsed();
        let text = err.to_string();
        assert!(matches!(err, BlobError::Io { .. }), "{text}");
        assert!(
            text.contains("s3://sluice-ckpt/unreachable")
                && text.contains("put")
                && text.contains("job-1/chk-1/shard-0")
                && text.contains(what),
            "port {port}: {text}"
        );
        // Retries included, the call ends at the timeout (with slack for a loaded machine).
        assert!(
            elapsed < timeout + Duration::from_secs(5),
            "port {port}: failed after {elapsed:?}, the timeout is {timeout:?}: {text}"
        );
    }
    drop(silent);
}
