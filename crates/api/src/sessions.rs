//! Web page sessions: an API key exchanged once for a session cookie, so that the pages
//! never hold a key.
//!
//! A session names the key it was opened with, not the principal: every request through
//! it authenticates that key again (a revoked key ends its sessions at the next request)
//! and counts against the key's rate limit, as a bearer request would. The cookie is a
//! random 256-bit token; the table keeps only its BLAKE3 digest, so a copy of the table
//! (a core dump) opens no session. Each session carries its own anti-forgery token, which a
//! page reads from `GET /session` (same origin only) and sends back in `X-CSRF-Token` with
//! every request that changes something; `SameSite=Strict` keeps the cookie off cross-site
//! requests as a second line.
//!
//! Sessions live in this process's memory: a restart signs everyone out (the pages send
//! them back to the sign-in page). The table is bounded ([`MAX_SESSIONS`]); when it is full
//! of live sessions a new sign-in is refused 503 rather than evicting someone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::problem::{ApiError, Code};

/// The cookie's name.
pub const COOKIE: &str = "yx_session";

/// The header carrying a session's anti-forgery token on requests that change something.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The header a sign-in request must carry: a cross-site form cannot send it, and a
/// cross-origin script cannot either without a CORS preflight, which the service never
/// grants.
pub const SIGNIN_HEADER: &str = "x-yuanxin-signin";

/// Live sessions held at most.
pub const MAX_SESSIONS: usize = 10_000;

/// A session ends this long after it began, however much it is used.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

/// One session.
#[derive(Debug, Clone)]
struct Session {
    key_id: Arc<str>,
    csrf: Arc<str>,
    began: Instant,
    used: Instant,
}

/// What a valid session gives a request.
#[derive(Debug, Clone)]
pub struct Open {
    /// The key it was opened with.
    pub key_id: Arc<str>,
    /// Its anti-forgery token.
    pub csrf: Arc<str>,
    /// When it ends if unused from now.
    pub idle_until: Instant,
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    table: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError::internal("session table lock poisoned")
}

impl Sessions {
    /// An empty table whose sessions end after `idle` without use.
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.used) < self.idle
            && now.saturating_duration_since(s.began) < ABSOLUTE
    }

    /// Opens a session for a key already authenticated: the cookie token and the
    /// anti-forgery token. Ended sessions are swept first; a table full of live ones
    /// refuses (503).
    pub fn open(&self, key_id: Arc<str>, now: Instant) -> Result<(String, Arc<str>), ApiError> {
        let token = hex(&random32()?);
        let csrf: Arc<str> = hex(&random32()?).into();
        let mut t = self.table.lock().map_err(poisoned)?;
        if t.len() >= MAX_SESSIONS {
            t.retain(|_, s| self.live(s, now));
        }
        if t.len() >= MAX_SESSIONS {
            return Err(ApiError::new(
                Code::Overloaded,
                "too many open sessions: try again later",
            ));
        }
        t.insert(
            digest(&token),
            Session {
                key_id,
                csrf: Arc::clone(&csrf),
                began: now,
                used: now,
            },
        );
        Ok((token, csrf))
    }

    /// The session of a cookie token, if it is live (its use is recorded); an ended one is
    /// removed.
    pub fn get(&self, token: &str, now: Instant) -> Result<Option<Open>, ApiError> {
        let d = digest(token);
        let mut t = self.table.lock().map_err(poisoned)?;
        let Some(s) = t.get_mut(&d) else {
            return Ok(None);
        };
        if !self.live(s, now) {
            t.remove(&d);
            return Ok(None);
        }
        s.used = now;
        Ok(Some(Open {
            key_id: Arc::clone(&s.key_id),
            csrf: Arc::clone(&s.csrf),
            idle_until: now + self.idle,
        }))
    }

    /// Ends a session (sign-out); ending an unknown one is not an error.
    pub fn end(&self, token: &str) -> Result<(), ApiError> {
        self.table.lock().map_err(poisoned)?.remove(&digest(token));
        Ok(())
    }

    /// Live sessions now.
    #[cfg(test)]
    fn count(&self, now: Instant) -> Result<usize, ApiError> {
        let t = self.table.lock().map_err(poisoned)?;
        Ok(t.values().filter(|s| self.live(s, now)).count())
    }
}

fn random32() -> Result<[u8; 32], ApiError> {
    yuanxin_store::random32().map_err(ApiError::internal)
}

/// The value of one cookie of a `Cookie` header (RFC 6265 §5.4: `name=value` pairs
/// separated by `; `).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim_matches('"'))
    })
}

/// Constant-time comparison of a presented anti-forgery token with the session's.
pub fn same_token(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The `Set-Cookie` value of a session: HttpOnly, SameSite=Strict, path `/`, Secure when
/// served over TLS; `token` empty clears it.
pub fn set_cookie(token: &str, max_age: Duration, secure: bool) -> String {
    let age = if token.is_empty() {
        0
    } else {
        max_age.as_secs()
    };
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_and_when_old_and_at_sign_out() {
        let s = Sessions::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (tok, csrf) = s.open("k1".into(), t0).unwrap();
        let open = s.get(&tok, t0 + Duration::from_secs(59)).unwrap().unwrap();
        assert_eq!(&*open.key_id, "k1");
        assert_eq!(open.csrf, csrf);
        // Used at 59 s: live until 119 s.
        assert!(s
            .get(&tok, t0 + Duration::from_secs(118))
            .unwrap()
            .is_some());
        assert!(s
            .get(&tok, t0 + Duration::from_secs(179))
            .unwrap()
            .is_none());
        // Removed once ended.
        assert!(s.get(&tok, t0 + Duration::from_secs(1)).unwrap().is_none());

        let (tok, _) = s.open("k2".into(), t0).unwrap();
        let mut at = t0;
        while at < t0 + ABSOLUTE - Duration::from_secs(30) {
            at += Duration::from_secs(30);
            assert!(s.get(&tok, at).unwrap().is_some(), "{:?}", at - t0);
        }
        assert!(s.get(&tok, t0 + ABSOLUTE).unwrap().is_none());

        let (tok, _) = s.open("k3".into(), t0).unwrap();
        s.end(&tok).unwrap();
        assert!(s.get(&tok, t0).unwrap().is_none());
        assert!(s.get("not a token", t0).unwrap().is_none());
    }

    #[test]
    fn a_full_table_sweeps_ended_sessions_and_refuses_when_all_are_live() {
        let s = Sessions::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..MAX_SESSIONS {
            s.open("k".into(), t0).unwrap();
        }
        let e = s.open("k".into(), t0).unwrap_err();
        assert_eq!(e.code, Code::Overloaded);
        assert_eq!(s.count(t0).unwrap(), MAX_SESSIONS);
        // A minute later they have all ended: the next sign-in sweeps them.
        let later = t0 + Duration::from_secs(61);
        s.open("k".into(), later).unwrap();
        assert_eq!(s.table.lock().unwrap().len(), 1);
    }

    #[test]
    fn cookies_and_tokens_are_read_exactly() {
        let h = "a=1; yx_session=abc; yx_session_x=zzz";
        assert_eq!(cookie(h, COOKIE), Some("abc"));
        assert_eq!(cookie("yx_session_x=zzz", COOKIE), None);
        assert_eq!(cookie("", COOKIE), None);
        assert!(same_token("abcd", "abcd"));
        assert!(!same_token("abce", "abcd"));
        assert!(!same_token("abc", "abcd"));
        let c = set_cookie("t", Duration::from_secs(1800), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(set_cookie("", Duration::from_secs(1800), false).contains("Max-Age=0"));
    }
}
