//! Who may use the page: the token, the session cookie, one-time login codes, the CSRF token,
//! the Host check and the security headers every response carries.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::App;
use crate::home::{Home, now_ms};

/// The cookie a login sets.
const SESSION_COOKIE: &str = "fedpool_session";
/// How long a login code is good for.
const LOGIN_CODE_MS: u64 = 120_000;

/// The page's secret: 32 random bytes from the OS, kept hex-encoded in `web.token` (0600).
/// The API token is the secret itself; the session cookie and the CSRF token are derived from
/// it with keyed hashes, so none of them is the other.
#[derive(Clone)]
pub struct Secret {
    bytes: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// The home's token file.
    pub fn path(home: &Home) -> std::path::PathBuf {
        home.dir().join("web.token")
    }

    /// Reads the home's secret, or makes one (a new file, created 0600 and exclusively).
    /// Refuses a token file others can read.
    pub fn load_or_create(home: &Home) -> Result<Secret> {
        let path = Self::path(home);
        if path.exists() {
            return Self::load(home);
        }
        home.ensure_exists()?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(format!("{}\n", hex(&bytes)).as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Secret { bytes })
    }

    /// Reads the home's secret (for `fedpool open`).
    pub fn load(home: &Home) -> Result<Secret> {
        let path = Self::path(home);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "{} can be read by others (mode {:o}); make it private with `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let bytes = unhex(text.trim())
            .with_context(|| format!("{} does not hold a token", path.display()))?;
        Ok(Secret { bytes })
    }

    /// The API token.
    pub fn token(&self) -> String {
        hex(&self.bytes)
    }

    fn derive(&self, purpose: &str) -> String {
        hex(blake3::keyed_hash(&self.bytes, purpose.as_bytes()).as_bytes())
    }

    /// The session cookie's value.
    pub(crate) fn session(&self) -> String {
        self.derive("fedpool web session v1")
    }

    /// The CSRF token forms carry.
    pub(crate) fn csrf(&self) -> String {
        self.derive("fedpool web csrf v1")
    }
}

/// A one-time login code for `fedpool open`: the time, a random nonce and a keyed hash of
/// both. Good for two minutes and once, so the link left in the browser's history is spent.
pub fn login_code(secret: &Secret, now_ms: u64) -> Result<String> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let body = format!("{now_ms}-{}", hex(&nonce));
    Ok(format!(
        "{body}-{}",
        secret.derive(&format!("login {body}"))
    ))
}

fn check_login_code(secret: &Secret, code: &str, now: u64) -> bool {
    let Some((body, mac)) = code.rsplit_once('-') else {
        return false;
    };
    let Some(issued) = body.split('-').next().and_then(|t| t.parse::<u64>().ok()) else {
        return false;
    };
    if issued > now.saturating_add(5_000) || now.saturating_sub(issued) > LOGIN_CODE_MS {
        return false;
    }
    equal(&secret.derive(&format!("login {body}")), mac)
}

/// Compares two secrets in constant time (through their hashes).
fn equal(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// How a request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authenticated {
    /// `Authorization: Bearer` with the token: not something a browser sends by itself.
    Bearer,
    /// The session cookie: a browser sends it by itself, so changes also need the CSRF token.
    Cookie,
}

/// `GET /login?code=…`: spends a login code and sets the session cookie.
pub(crate) async fn login(
    State(app): State<Arc<App>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let code = query.get("code").map(String::as_str).unwrap_or_default();
    let fresh = check_login_code(&app.secret, code, now_ms())
        && app
            .used_codes
            .lock()
            .map(|mut used| used.insert(code.to_string()))
            .unwrap_or(false);
    if !fresh {
        return (
            StatusCode::UNAUTHORIZED,
            "this login link is not valid (they work once, for two minutes): run `fedpool open` again",
        )
            .into_response();
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        app.secret.session()
    );
    let mut response = Redirect::to("/models").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Every request: the Host must be the page's own (no DNS rebinding), the caller must hold
/// the token or the session, and a browser's cross-site change is refused; every response
/// gets the security headers.
pub(crate) async fn guard(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    let refused = |status: StatusCode, why: &'static str| secure((status, why).into_response());
    if !app.allow_remote && !host_is_ours(request.headers(), app.addr) {
        return refused(StatusCode::MISDIRECTED_REQUEST, "unknown host");
    }
    let unsafe_method = !matches!(*request.method(), Method::GET | Method::HEAD);
    if unsafe_method
        && request
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|site| site == "cross-site")
    {
        return refused(StatusCode::FORBIDDEN, "cross-site requests are refused");
    }
    if request.uri().path() == "/login" {
        return secure(next.run(request).await);
    }
    let authenticated = if bearer(request.headers()).is_some_and(|t| equal(&t, &app.secret.token()))
    {
        Some(Authenticated::Bearer)
    } else if cookie(request.headers(), SESSION_COOKIE)
        .is_some_and(|s| equal(&s, &app.secret.session()))
    {
        Some(Authenticated::Cookie)
    } else {
        None
    };
    let Some(authenticated) = authenticated else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "this page needs the node's token: run `fedpool open`, or send `Authorization: Bearer TOKEN` (the token is in the node's home, web.token)",
        );
    };
    request.extensions_mut().insert(authenticated);
    secure(next.run(request).await)
}

fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn host_is_ours(headers: &HeaderMap, addr: std::net::SocketAddr) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let port = addr.port();
    [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        addr.to_string(),
    ]
    .iter()
    .any(|ours| ours == host)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Whether a cookie-authenticated change carries the CSRF token (Bearer needs none).
pub(crate) fn csrf_ok(app: &App, authenticated: Authenticated, presented: Option<&str>) -> bool {
    match authenticated {
        Authenticated::Bearer => true,
        Authenticated::Cookie => presented.is_some_and(|t| equal(t, &app.secret.csrf())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    // Exactly 64 digits, as the token is written: no `0x` spelling of it.
    if text.len() != 64 {
        return None;
    }
    fedpool_ledger::wallet::parse_hex(text)
        .ok()?
        .try_into()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_code_works_for_two_minutes_and_only_with_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path())).unwrap();
        let secret = Secret::load_or_create(&home).unwrap();
        assert_eq!(Secret::load(&home).unwrap().token(), secret.token());
        let code = login_code(&secret, 1_000_000).unwrap();
        assert!(check_login_code(&secret, &code, 1_000_000));
        assert!(check_login_code(&secret, &code, 1_000_000 + LOGIN_CODE_MS));
        assert!(!check_login_code(&secret, &code, 1_000_001 + LOGIN_CODE_MS));
        let mut tampered = code.clone();
        tampered.replace_range(0..1, "2");
        assert!(!check_login_code(&secret, &tampered, 1_000_000));
        let other_dir = tempfile::tempdir().unwrap();
        let other =
            Secret::load_or_create(&Home::resolve(Some(other_dir.path())).unwrap()).unwrap();
        assert!(!check_login_code(&other, &code, 1_000_000));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(Secret::path(&home))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(Secret::path(&home), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            assert!(Secret::load(&home).is_err(), "a readable token is refused");
        }
    }
}
