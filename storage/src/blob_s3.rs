//! A blob store in an S3-compatible object store: `s3://BUCKET/PREFIX`.
//!
//! Blob `P` is the object `PREFIX/P` in `BUCKET` (`P` itself when the URL has no prefix). A
//! put is one `PutObject`, which S3 acknowledges only once the object is stored durably and
//! makes visible whole or not at all, replacing an object already there. A get is one
//! `GetObject`; `list` pages through `ListObjectsV2` until the listing ends; a delete is one
//! `DeleteObject`, which S3 answers with success for a missing key too.
//!
//! Configuration ([`S3Settings`], in `blob_s3_settings.rs`) comes from the environment:
//! credentials and region as the AWS tools read them (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`, and
//! the other `AWS_*` settings `object_store` knows), the endpoint of an S3-compatible server
//! from `SLUICE_S3_ENDPOINT`, `AWS_ENDPOINT_URL` or `AWS_ENDPOINT` (in that order; requests
//! then name the bucket in the path), and `AWS_ALLOW_HTTP=true` to allow an `http://`
//! endpoint.
//!
//! The client (`object_store` over reqwest with rustls) is async; the store owns a small
//! tokio runtime and runs each request on it with `block_on`, bounded by
//! [`S3Settings::with_op_timeout`] (retries included), so an unreachable or silent store
//! fails the call with [`BlobError::Io`] instead of hanging the checkpoint coordinator.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore};
use object_store::{PutPayload, RetryConfig};

use crate::blob::{check_path, BlobError, BlobStore};
use crate::blob_s3_settings::S3Settings;

/// Pages one list reads before it gives up on a server that never ends a listing.
const S3_LIST_PAGES_MAX: usize = 100_000;
/// The largest blob one put stores: S3's limit for a single `PutObject` (5 GiB).
const S3_PUT_BYTES_MAX: usize = 5 << 30;
/// Worker threads of a store's private runtime: requests are few and large.
const S3_RUNTIME_THREADS: usize = 2;
/// Retries of a failed request (connection errors, 5xx, throttling) within its timeout.
const S3_RETRIES_MAX: usize = 3;
/// The longest a connection attempt may take, when the operation timeout is longer.
const S3_CONNECT_TIMEOUT_MS_MAX: u64 = 5_000;

/// A bucket (and key prefix) of blobs in an S3-compatible store.
pub struct S3Store {
    url: String,
    /// Every key starts with this: empty, or the URL's prefix and a `/`.
    key_prefix: String,
    endpoint: String,
    client: AmazonS3,
    op_timeout: Duration,
    list_page_keys: usize,
    /// Always `Some` until drop, which shuts it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Splits `s3://BUCKET/PREFIX` into the bucket and the prefix without its slashes.
fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or("an S3 URL starts with s3://")?;
    if rest.contains(['?', '#']) {
        return Err("an S3 URL has no query or fragment: s3://BUCKET/PREFIX".into());
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("the URL names no bucket: use s3://BUCKET/PREFIX".into());
    }
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !bucket_ok {
        return Err(format!(
            "{bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, `.` or `-`)"
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty()
        && !prefix
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
    {
        return Err(format!("prefix {prefix:?} has an empty, `.` or `..` part"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

impl S3Store {
    /// Opens the store at `url` (`s3://BUCKET/PREFIX`) with `settings`. Nothing is sent
    /// until the first operation, so a missing bucket or a wrong endpoint shows there.
    pub fn open(url: &str, settings: &S3Settings) -> Result<Self, BlobError> {
        let bad = |reason: String| BlobError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let (bucket, prefix) = parse_url(url).map_err(bad)?;
        if let Some(endpoint) = &settings.endpoint {
            if endpoint.starts_with("http://") && !settings.allow_http {
                return Err(bad(format!(
                    "endpoint {endpoint} is plain HTTP; set AWS_ALLOW_HTTP=true to allow it"
                )));
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(S3_RUNTIME_THREADS)
            .thread_name("sluice-s3")
            .enable_all()
            .build()
            .map_err(|e| BlobError::Io {
                store: url.to_owned(),
                op: "open",
                path: String::new(),
                reason: format!("cannot start the S3 client's runtime: {e}"),
            })?;
        let connect_timeout = settings
            .op_timeout
            .min(Duration::from_millis(S3_CONNECT_TIMEOUT_MS_MAX));
        // Client options go first: `with_client_options` replaces what the settings set.
        let mut builder = AmazonS3Builder::new()
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(settings.op_timeout)
                    .with_connect_timeout(connect_timeout),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: S3_RETRIES_MAX,
                retry_timeout: settings.op_timeout,
            });
        for (key, value) in &settings.aws {
            builder = builder.with_config(*key, value);
        }
        builder = builder
            .with_allow_http(settings.allow_http)
            .with_bucket_name(&bucket);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let client = {
            let _entered = runtime.enter();
            builder
                .build()
                .map_err(|e| bad(format!("cannot configure the S3 client: {e}")))?
        };
        let url = match prefix.is_empty() {
            true => format!("s3://{bucket}"),
            false => format!("s3://{bucket}/{prefix}"),
        };
        Ok(Self {
            url,
            key_prefix: match prefix.is_empty() {
                true => String::new(),
                false => format!("{prefix}/"),
            },
            endpoint: settings
                .endpoint
                .clone()
                .unwrap_or_else(|| "the AWS S3 endpoint".into()),
            client,
            op_timeout: settings.op_timeout,
            list_page_keys: settings.list_page_keys,
            runtime: Some(runtime),
        })
    }

    fn io(&self, op: &'static str, path: &str, reason: String) -> BlobError {
        BlobError::Io {
            store: self.url(),
            op,
            path: path.to_owned(),
            reason,
        }
    }

    /// The object key of blob `path`, checked.
    fn key(&self, path: &str) -> Result<Path, BlobError> {
        check_path(&self.url(), path)?;
        Path::parse(format!("{}{path}", self.key_prefix))
            .map_err(|e| self.io("check", path, format!("not a valid object key: {e}")))
    }

    /// Runs one request on the store's runtime, bounded by the operation timeout.
    fn run<T>(
        &self,
        op: &'static str,
        path: &str,
        request: impl Future<Output = object_store::Result<T>> + Send,
    ) -> Result<T, BlobError>
    where
        T: Send,
    {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let bounded = async { tokio::time::timeout(self.op_timeout, request).await };
        // `block_on` panics on a thread that is already inside a runtime (an agent task);
        // such a caller blocks a helper thread instead.
        let outcome = match tokio::runtime::Handle::try_current() {
            Err(_) => runtime.block_on(bounded),
            Ok(_) => std::thread::scope(|scope| {
                scope
                    .spawn(|| runtime.block_on(bounded))
                    .join()
                    .map_err(|_| self.io(op, path, "the S3 request thread panicked".into()))
            })?,
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.classify(op, path, e)),
            Err(_elapsed) => Err(self.io(op, path, self.silent())),
        }
    }

    fn silent(&self) -> String {
        format!(
            "no answer from {} within {} ms: the store is unreachable or too slow",
            self.endpoint,
            self.op_timeout.as_millis()
        )
    }

    /// Says what went wrong: not found, a missing bucket, access denied, unreachable.
    fn classify(&self, op: &'static str, path: &str, e: object_store::Error) -> BlobError {
        let detail = error_chain(&e);
        let bucket = self.url["s3://".len()..]
            .split('/')
            .next()
            .unwrap_or_default();
        if detail.contains("NoSuchBucket") {
            return self.io(
                op,
                path,
                format!("bucket {bucket:?} does not exist (create it or fix the URL): {detail}"),
            );
        }
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound {
                store: self.url(),
                path: path.to_owned(),
            },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => self.io(
                op,
                path,
                format!(
                    "access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the \
                     bucket's policy: {detail}"
                ),
            ),
            _ if is_connect_error(&e) => self.io(
                op,
                path,
                format!("could not reach {}: {detail}", self.endpoint),
            ),
            _ if is_timeout(&e) => self.io(op, path, format!("{}: {detail}", self.silent())),
            _ => self.io(op, path, detail),
        }
    }
}

/// The error and its sources, joined on one line, so a message shows the server's own words.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    // Error bodies are XML documents over several lines.
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `e` comes of a request that got no answer in time. The HTTP client's timeout
/// error is private to it, so it is known by its words.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        if let Some(http) = cause.downcast_ref::<HttpError>() {
            if matches!(http.kind(), HttpErrorKind::Timeout) {
                return true;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        if cause.to_string().contains("timed out") {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether `e` comes of not reaching the server at all (no connection, no name).
fn is_connect_error(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut source = Some(e);
    while let Some(cause) = source {
        if let Some(http) = cause.downcast_ref::<HttpError>() {
            if matches!(http.kind(), HttpErrorKind::Connect) {
                return true;
            }
        }
        // object_store's request error forwards `source` past its `HttpError`, so the
        // socket's own error is what shows.
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

impl Drop for S3Store {
    fn drop(&mut self) {
        // The last handle may be dropped inside another runtime, where a blocking shutdown
        // panics; requests never outlive the call that made them, so nothing is cut short.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl BlobStore for S3Store {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn put(&self, path: &str, data: &[u8]) -> Result<(), BlobError> {
        let key = self.key(path)?;
        if data.len() > S3_PUT_BYTES_MAX {
            return Err(self.io(
                "put",
                path,
                format!(
                    "{} bytes, more than the {S3_PUT_BYTES_MAX} one S3 put can store",
                    data.len()
                ),
            ));
        }
        let payload = PutPayload::from(data.to_vec());
        self.run("put", path, async { self.client.put(&key, payload).await })
            .map(|_| ())
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, BlobError> {
        let key = self.key(path)?;
        let bytes = self.run("get", path, async {
            self.client.get(&key).await?.bytes().await
        })?;
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        // A raw key prefix, as `DirStore` matches paths: `job-1/chk-` finds `job-1/chk-3/x`.
        let key_prefix = format!("{}{prefix}", self.key_prefix);
        let mut found = Vec::new();
        let mut page_token = None;
        for _ in 0..S3_LIST_PAGES_MAX {
            let opts = PaginatedListOptions {
                max_keys: Some(self.list_page_keys),
                page_token: page_token.take(),
                ..Default::default()
            };
            let page = self.run("list", prefix, async {
                self.client.list_paginated(Some(&key_prefix), opts).await
            })?;
            for object in page.result.objects {
                if let Some(path) = object.location.as_ref().strip_prefix(&self.key_prefix) {
                    found.push(path.to_owned());
                }
            }
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => return Ok(found),
            }
        }
        Err(self.io(
            "list",
            prefix,
            format!("the listing did not end after {S3_LIST_PAGES_MAX} pages"),
        ))
    }

    fn delete(&self, path: &str) -> Result<(), BlobError> {
        let key = self.key(path)?;
        match self.run("delete", path, async { self.client.delete(&key).await }) {
            Err(BlobError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> S3Settings {
        S3Settings::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(parse_url("s3://bkt").unwrap(), ("bkt".into(), "".into()));
        assert_eq!(parse_url("s3://bkt/").unwrap(), ("bkt".into(), "".into()));
        assert_eq!(
            parse_url("s3://bkt/a/b/").unwrap(),
            ("bkt".into(), "a/b".into())
        );
        assert!(parse_url("s3://").unwrap_err().contains("no bucket"));
        assert!(parse_url("s3:///x").unwrap_err().contains("no bucket"));
        assert!(parse_url("s3://Bad_Bucket")
            .unwrap_err()
            .contains("bucket name"));
        assert!(parse_url("s3://bkt/a//b").unwrap_err().contains("empty"));
        assert!(parse_url("s3://bkt/a/../b").unwrap_err().contains("`..`"));
        assert!(parse_url("s3://bkt/a?x=1").unwrap_err().contains("query"));
    }

    #[test]
    fn plain_http_needs_allow_http() {
        let s = vars(&[("SLUICE_S3_ENDPOINT", "http://127.0.0.1:1")]);
        let e = S3Store::open("s3://bkt/p", &s).unwrap_err();
        assert!(e.to_string().contains("AWS_ALLOW_HTTP=true"), "{e}");
        let s = vars(&[
            ("SLUICE_S3_ENDPOINT", "http://127.0.0.1:1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]);
        let store = S3Store::open("s3://bkt/p/", &s).unwrap();
        assert_eq!(store.url(), "s3://bkt/p");
        assert_eq!(store.key("a/b").unwrap().as_ref(), "p/a/b");
        assert!(store.key("../a").is_err());
    }
}
