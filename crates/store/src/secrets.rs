//! The service's secrets, kept out of the database: the key that API-key digests are
//! computed with, and the Ed25519 key that signs the query log's tree heads. Someone who
//! can read or write the database file alone can neither mint a working API key nor sign
//! a forged log.
//!
//! They come from a key file (JSON, created at first start with owner-only permissions;
//! a file others can read is refused, as ssh refuses a private key) or from the
//! `YUANXIN_KEY` environment variable (128 hex digits: the API-key secret, then the
//! signing key's seed).

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The secrets.
pub struct Secrets {
    api_key_secret: [u8; 32],
    signing: SigningKey,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets(public key {})", hex(&self.public_key()))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    /// Format version.
    version: u32,
    /// Hex of the 32-byte secret keying API-key digests.
    api_key_secret: String,
    /// Hex of the 32-byte Ed25519 seed signing the log.
    log_signing_key: String,
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Parses exactly `N` bytes of hex.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let t = text.as_bytes();
    if t.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = digit(t[2 * i])?;
        let lo = digit(t[2 * i + 1])?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// 32 random bytes from the operating system.
pub fn random32() -> Result<[u8; 32], StoreError> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| StoreError::io("/dev/urandom", e))?;
    Ok(b)
}

/// Where the secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsSource {
    /// A key file, created if missing.
    File(PathBuf),
    /// The value of `YUANXIN_KEY` (128 hex digits).
    Env(String),
}

impl Secrets {
    /// From their two parts.
    pub fn from_parts(api_key_secret: [u8; 32], seed: [u8; 32]) -> Secrets {
        Secrets {
            api_key_secret,
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Loads the secrets; a missing key file is created with fresh secrets (the API-key
    /// secret taken from `legacy` when an older database held it, so its keys keep
    /// working). Returns whether the file was created.
    pub fn load(
        source: &SecretsSource,
        legacy: Option<[u8; 32]>,
    ) -> Result<(Secrets, bool), StoreError> {
        match source {
            SecretsSource::Env(v) => {
                let v = v.trim();
                let bad = || {
                    StoreError::Secrets(
                        "YUANXIN_KEY must be 128 hex digits (the API-key secret, then the signing key's seed)"
                            .into(),
                    )
                };
                let (a, b) = (v.get(..64).ok_or_else(bad)?, v.get(64..).ok_or_else(bad)?);
                Ok((
                    Secrets::from_parts(unhex(a).ok_or_else(bad)?, unhex(b).ok_or_else(bad)?),
                    false,
                ))
            }
            SecretsSource::File(path) => match std::fs::metadata(path) {
                Ok(meta) => {
                    check_private(path, &meta)?;
                    let text =
                        std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))?;
                    let f: KeyFile = serde_json::from_str(&text)
                        .map_err(|e| StoreError::Secrets(format!("{}: {e}", path.display())))?;
                    let bad = |what: &str| {
                        StoreError::Secrets(format!(
                            "{}: {what} must be 64 hex digits",
                            path.display()
                        ))
                    };
                    if f.version != 1 {
                        return Err(StoreError::Secrets(format!(
                            "{}: key file version {} (this build reads 1)",
                            path.display(),
                            f.version
                        )));
                    }
                    Ok((
                        Secrets::from_parts(
                            unhex(&f.api_key_secret).ok_or_else(|| bad("api_key_secret"))?,
                            unhex(&f.log_signing_key).ok_or_else(|| bad("log_signing_key"))?,
                        ),
                        false,
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let s = Secrets::from_parts(legacy.map_or_else(random32, Ok)?, random32()?);
                    s.write_new(path)?;
                    Ok((s, true))
                }
                Err(e) => Err(StoreError::io(path, e)),
            },
        }
    }

    /// Writes a new key file, readable by its owner only; never overwrites one.
    fn write_new(&self, path: &Path) -> Result<(), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let body = serde_json::to_string_pretty(&KeyFile {
            version: 1,
            api_key_secret: hex(&self.api_key_secret),
            log_signing_key: hex(self.signing.as_bytes()),
        })
        .map_err(|e| StoreError::Secrets(e.to_string()))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| StoreError::io(path, e))?;
        f.write_all(body.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io(path, e))
    }

    /// The key API-key digests are computed with.
    pub fn api_key_secret(&self) -> &[u8; 32] {
        &self.api_key_secret
    }

    /// The log's public key (hex of it is what verifiers are given).
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs a message with the log key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Secrets(format!(
            "{} is readable by others (mode {mode:o}); make it owner-only: chmod 600",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/yuanxin.key");
        let src = SecretsSource::File(path.clone());
        let (a, created) = Secrets::load(&src, Some([7; 32])).unwrap();
        assert!(created);
        assert_eq!(
            a.api_key_secret(),
            &[7; 32],
            "a legacy secret is carried over"
        );
        let (b, created) = Secrets::load(&src, None).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = Secrets::load(&src, None).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        let env = SecretsSource::Env(format!("{}{}", "ab".repeat(32), "cd".repeat(32)));
        let (e, _) = Secrets::load(&env, None).unwrap();
        assert_eq!(e.api_key_secret(), &[0xab; 32]);
        assert!(Secrets::load(&SecretsSource::Env("12".into()), None).is_err());
        assert_eq!(unhex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(unhex::<2>("0g00"), None);
    }
}
