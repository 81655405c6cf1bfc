//! How an `s3://` checkpoint store reaches its service, read from the environment.

use std::fmt;
use std::time::Duration;

use object_store::aws::AmazonS3ConfigKey;

/// How long one request (a put, a get with its body, a list page, a delete) may take by
/// default, retries included.
pub const S3_OP_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Keys asked for per list page by default: S3's own maximum.
pub const S3_LIST_PAGE_KEYS_MAX: usize = 1000;

/// How an [`S3Store`](crate::blob::S3Store) reaches its service: credentials, region,
/// endpoint and limits.
#[derive(Clone)]
pub struct S3Settings {
    /// `AWS_*` settings passed to `object_store` as they are.
    pub(crate) aws: Vec<(AmazonS3ConfigKey, String)>,
    pub(crate) endpoint: Option<String>,
    pub(crate) allow_http: bool,
    pub(crate) op_timeout: Duration,
    pub(crate) list_page_keys: usize,
}

impl fmt::Debug for S3Settings {
    // Lists which settings are present, never their values: they hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.aws.iter().map(|(k, _)| k.as_ref()).collect();
        f.debug_struct("S3Settings")
            .field("aws", &keys)
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .field("op_timeout", &self.op_timeout)
            .field("list_page_keys", &self.list_page_keys)
            .finish()
    }
}

impl S3Settings {
    /// Settings from this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Settings from `(name, value)` pairs as the environment holds them; names that are
    /// neither `AWS_*` settings `object_store` knows nor `SLUICE_S3_ENDPOINT` are ignored.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut aws = Vec::new();
        let (mut sluice_endpoint, mut endpoint_url, mut endpoint) = (None, None, None);
        let mut allow_http = false;
        for (name, value) in vars {
            match name.as_str() {
                "SLUICE_S3_ENDPOINT" => sluice_endpoint = Some(value),
                "AWS_ENDPOINT_URL" => endpoint_url = Some(value),
                "AWS_ENDPOINT" => endpoint = Some(value),
                "AWS_ALLOW_HTTP" => allow_http = value.eq_ignore_ascii_case("true") || value == "1",
                // The URL names the bucket.
                "AWS_BUCKET" | "AWS_BUCKET_NAME" => {}
                _ if name.starts_with("AWS_") => {
                    if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        aws.push((key, value));
                    }
                }
                _ => {}
            }
        }
        Self {
            aws,
            endpoint: sluice_endpoint.or(endpoint_url).or(endpoint),
            allow_http,
            op_timeout: Duration::from_millis(S3_OP_TIMEOUT_MS_DEFAULT),
            list_page_keys: S3_LIST_PAGE_KEYS_MAX,
        }
    }

    /// Bounds each request, retries included (default [`S3_OP_TIMEOUT_MS_DEFAULT`]).
    pub fn with_op_timeout(mut self, op_timeout: Duration) -> Self {
        self.op_timeout = op_timeout;
        self
    }

    /// Keys asked for per list page, from 1 to [`S3_LIST_PAGE_KEYS_MAX`] (the default).
    pub fn with_list_page_keys(mut self, list_page_keys: usize) -> Self {
        self.list_page_keys = list_page_keys.clamp(1, S3_LIST_PAGE_KEYS_MAX);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> S3Settings {
        S3Settings::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn the_environment_names_endpoint_and_credentials() {
        let s = vars(&[
            ("AWS_ENDPOINT", "http://a"),
            ("AWS_ENDPOINT_URL", "http://b"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "k3pt-0ut-0f-l0gs"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ALLOW_HTTP", "true"),
            ("HOME", "/root"),
        ]);
        assert_eq!(s.endpoint.as_deref(), Some("http://b"));
        assert!(s.allow_http);
        assert_eq!(s.aws.len(), 3, "{s:?}");
        assert!(!format!("{s:?}").contains("k3pt"), "{s:?}");
        let s = vars(&[
            ("AWS_ENDPOINT_URL", "http://b"),
            ("SLUICE_S3_ENDPOINT", "http://c"),
        ]);
        assert_eq!(s.endpoint.as_deref(), Some("http://c"));
        assert!(!s.allow_http);
    }
}
