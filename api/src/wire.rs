//! How the admin API is spoken: metadata keys and the gRPC channel.

use std::time::Duration;

use sluice_security::{Role, Tls};
use tonic::transport::{Channel, Endpoint};

/// Metadata key carrying the caller's ACL token, as `Bearer SECRET`.
pub const TOKEN_KEY: &str = "authorization";
/// Metadata key carrying the leader's id on a "not the leader" answer.
pub const LEADER_ID_KEY: &str = "sluice-leader-id";
/// Metadata key carrying the leader's admin API address.
pub const LEADER_API_KEY: &str = "sluice-leader-api";
/// Metadata key carrying a state-machine rejection as JSON (`CommandError`).
pub const COMMAND_ERROR_KEY: &str = "sluice-command-error";
/// Metadata key marking a refusal because the leader has lost its quorum.
pub const NO_QUORUM_KEY: &str = "sluice-no-quorum";

/// Largest message a master or client accepts (a snapshot restore is one).
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// How long a connection attempt to a master may take.
pub const CONNECT_TIMEOUT_MS: u64 = 500;

/// The ACL token a call carries (`authorization: Bearer SECRET`), if any;
/// a header that is there but malformed is refused.
pub fn bearer_token(
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Option<String>, tonic::Status> {
    let Some(value) = metadata.get(TOKEN_KEY) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        tonic::Status::unauthenticated("permission denied: the authorization header is not text")
    })?;
    let secret = text.strip_prefix("Bearer ").ok_or_else(|| {
        tonic::Status::unauthenticated(
            "permission denied: the authorization header is not `Bearer TOKEN`",
        )
    })?;
    Ok(Some(secret.trim().to_owned()))
}

/// A gRPC channel to the master at `addr` (HOST:PORT) that connects on
/// first use; over mutual TLS when `tls` is given, accepting only a master's
/// certificate.
pub fn lazy_channel(addr: &str, tls: Option<&Tls>) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client_config(Role::Master))
            .map_err(|e| format!("TLS settings for {addr}: {e}"))?;
    }
    Ok(endpoint
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy())
}
