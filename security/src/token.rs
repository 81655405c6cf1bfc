//! ACL token secrets.
//!
//! A secret is 32 random bytes (hex), shown once when the token is created;
//! the replicated state keeps only its SHA-256, so neither a snapshot nor a
//! member's disk gives a token away. A fast hash is right here, unlike for
//! passwords: the secret has 256 bits of entropy, nothing to guess.

use ring::rand::SecureRandom;

/// A token's secret held in memory: `Debug` never prints it, so no `{:?}`
/// of a config or a client leaks it into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl From<String> for Secret {
    /// Surrounding whitespace (a newline from `$(cat file)`) is not part of it.
    fn from(secret: String) -> Self {
        Self(secret.trim().to_owned())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(s.to_owned()))
    }
}

/// Prefix of every secret, so one found in a file or a log is recognisable.
pub const SECRET_PREFIX: &str = "sluice_";

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| "the system's random source failed".to_owned())?;
    Ok(hex(&buf))
}

/// A new token secret.
pub fn new_secret() -> Result<String, String> {
    Ok(format!("{SECRET_PREFIX}{}", random_hex(32)?))
}

/// A new accessor: a token's public id, used to list and revoke it.
pub fn new_accessor() -> Result<String, String> {
    random_hex(8)
}

/// What the state keeps of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_hashes_stable() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(new_accessor().unwrap().len(), 16);
        let secret = Secret::from(format!("{a}\n"));
        assert_eq!(secret.expose(), a);
        assert!(!format!("{secret:?}").contains(&a));
    }
}
