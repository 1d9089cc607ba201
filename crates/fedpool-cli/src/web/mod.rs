//! The owner's web page: the node serves server-rendered pages and a JSON API on loopback,
//! behind a secret token kept in the home.
//!
//! Every state change is a form or JSON request to `/api/…`; the page has no script at all.
//! Access: `Authorization: Bearer TOKEN` (scripts, the CLI) or the session cookie a one-time
//! login link sets (`fedpool open`): HttpOnly, SameSite=Strict. A cookie-authenticated change
//! also needs the CSRF token (a hidden form field, or the `X-CSRF-Token` header), and a request
//! a browser marks cross-site is refused outright. Responses carry a strict
//! Content-Security-Policy; assets are embedded in the binary.

mod api;
mod auth;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::{get, post};

use crate::home::Home;

pub use auth::{Secret, login_code};

/// Where and how the page is served.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// Whether a non-loopback address is allowed (an explicit flag).
    pub allow_remote: bool,
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) home: Home,
    pub(crate) secret: Secret,
    /// The address the page is served at (for the Host check).
    pub(crate) addr: SocketAddr,
    pub(crate) allow_remote: bool,
    /// One-time login codes already used.
    pub(crate) used_codes: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The file in the home naming the page's address while a node serves it.
pub fn url_path(home: &Home) -> std::path::PathBuf {
    home.dir().join("web.url")
}

/// Binds the page's listener (refusing a non-loopback address unless allowed), writes its
/// address to the home, and returns the server to run and the address it is bound to.
pub async fn bind(
    home: Home,
    config: WebConfig,
) -> Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    if !config.addr.ip().is_loopback() && !config.allow_remote {
        bail!(
            "the web page would listen on {}, which is not a loopback address: anyone who can reach it could try the token; pass --web-allow-remote to mean it",
            config.addr
        );
    }
    let secret = Secret::load_or_create(&home)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} for the web page", config.addr))?;
    let addr = listener.local_addr()?;
    fedpool_ledger::replace_file(&url_path(&home), format!("http://{addr}/\n").as_bytes())
        .context("cannot record the web page's address in the home")?;
    let app = Arc::new(App {
        home,
        secret,
        addr,
        allow_remote: config.allow_remote,
        used_codes: Default::default(),
    });
    let server = axum::serve(listener, router(app)).into_future();
    Ok((addr, server))
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/models", get(pages::models))
        .route("/models/{id}", get(pages::model))
        .route("/models/{id}/charts/{chart}", get(pages::chart))
        .route("/policies", get(pages::policies))
        .route("/rewards", get(pages::rewards))
        .route("/rewards/wallet", get(pages::wallet))
        .route("/ledger", get(pages::ledger))
        .route("/data", get(pages::data))
        .route("/privacy", get(pages::privacy))
        .route("/assets/style.css", get(pages::style))
        .route("/api/models", get(api::models))
        .route("/api/models/{id}", get(api::model))
        .route("/api/models/{id}/grant", post(api::grant))
        .route("/api/models/{id}/refuse", post(api::refuse))
        .route("/api/models/{id}/revoke", post(api::revoke))
        .route("/api/models/{id}/receipt", get(api::receipt))
        .route("/api/policy", get(api::policy).post(api::set_policy))
        .route("/api/rewards", get(api::rewards))
        .route("/api/rewards.csv", get(api::rewards_csv))
        .route("/api/wallet", get(api::wallet))
        .route("/api/wallet/message", get(api::wallet_message))
        .route("/api/wallet/{action}", post(api::wallet_change))
        .route("/api/ledger", get(api::ledger))
        .route("/api/ledger/verify", get(api::verify))
        .route("/api/data", get(api::data))
        .route("/api/privacy", get(api::privacy))
        .route("/login", get(auth::login))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            auth::guard,
        ))
        .with_state(app)
}

/// Runs `f` on the owner's node (its own ledger connection) on the blocking pool.
pub(crate) async fn with_node<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut crate::node::Node) -> Result<T> + Send + 'static,
) -> Result<T> {
    let home = app.home.clone();
    tokio::task::spawn_blocking(move || {
        let mut node = crate::node::Node::open(home)?;
        f(&mut node)
    })
    .await
    .context("the request's task failed")?
}

/// `fedpool open`
#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// Print the login link instead of opening a browser.
    #[arg(long)]
    pub print: bool,
}

/// Opens the running node's page with a one-time login link: it sets the session cookie and
/// redirects, and is spent once used (or after two minutes), so the link the browser keeps
/// in its history opens nothing.
pub fn open(home: Home, args: OpenArgs) -> Result<()> {
    let url = std::fs::read_to_string(url_path(&home)).with_context(|| {
        format!(
            "no web page is recorded in {}: start the node with `fedpool node run`",
            home.dir().display()
        )
    })?;
    let secret = Secret::load(&home)?;
    let link = format!(
        "{}login?code={}",
        url.trim(),
        login_code(&secret, crate::home::now_ms())?
    );
    if args.print {
        println!("{link}");
        return Ok(());
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener).arg(&link).status() {
        Ok(status) if status.success() => {
            eprintln!("opened {} in your browser", url.trim());
            Ok(())
        }
        _ => {
            eprintln!(
                "could not start a browser ({opener}); open this link (it works once, for two minutes):"
            );
            println!("{link}");
            Ok(())
        }
    }
}
