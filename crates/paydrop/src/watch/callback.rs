//! The callback listener as the daemon sets it up: refuses one other
//! machines can reach without the path secret, binds it, and derives the
//! address the provider is told to post results to.

use anyhow::{Context, Result};

use crate::config::WatchConfig;

/// Binds the callback listener; returns it with the callback address sent
/// with every upload.
pub(super) async fn bind(watch: &WatchConfig) -> Result<(tokio::net::TcpListener, String)> {
    check_callback_listener(watch)?;
    let listener = tokio::net::TcpListener::bind(&watch.callback_bind)
        .await
        .with_context(|| format!("binding the callback server to {}", watch.callback_bind))?;
    let addr = listener.local_addr()?;
    let callback_url = match (&watch.callback_url, &watch.callback_secret) {
        (Some(url), _) => url.clone(),
        (None, Some(secret)) => format!("http://{addr}/callback/{}", secret.expose()),
        (None, None) => format!("http://{addr}/callback"),
    };
    Ok((listener, callback_url))
}

/// A callback listener other machines can reach must have its path secret
/// (the `Hash` alone is checked only after the whole body is read), and a
/// configured `callback_url` must carry that secret, or every callback would
/// be refused.
fn check_callback_listener(watch: &WatchConfig) -> Result<()> {
    let bind = watch.callback_bind.trim();
    let loopback = match bind.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => bind.starts_with("localhost:"),
    };
    anyhow::ensure!(
        loopback || watch.callback_secret.is_some(),
        "the callback listener {bind} can be reached from other machines, but [watch] \
         callback_secret is not set: set it (a long random string; it becomes part of the \
         callback address) or bind to 127.0.0.1 behind a reverse proxy"
    );
    if let (Some(url), Some(secret)) = (&watch.callback_url, &watch.callback_secret) {
        if !url.contains(secret.expose()) {
            tracing::warn!(
                "[watch] callback_url does not contain callback_secret: the provider's result \
                 callbacks will be refused with 401; end the address with /callback/<secret>"
            );
        }
    }
    Ok(())
}
