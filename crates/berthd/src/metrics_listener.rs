//! `--metrics-addr`: binds the address (dockerd's flag: `HOST:PORT`) and
//! serves berth-dashboard there (`/metrics`, the dashboard and its API)
//! with its own connection cap, apart from the Engine API's. Nothing on it
//! is authenticated, which the log says when it is not on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use berth_api::{ApiMetrics, Server};
use berth_engine::Engine;

/// Connections the metrics address keeps open at most (scrapers and
/// browsers; each dashboard tab holds one for its event feed).
const MAX_CONNECTIONS: usize = 64;

/// `HOST:PORT` (an IP literal or a name), as dockerd takes `metrics-addr`.
pub fn parse_metrics_addr(addr: &str) -> Result<(String, u16)> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        bail!("metrics-addr {addr:?}: expected HOST:PORT");
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("metrics-addr {addr:?}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("metrics-addr {addr:?}: expected HOST:PORT");
    }
    Ok((host.to_string(), port))
}

/// The running metrics server and the dashboard's host pollers.
pub struct MetricsServer {
    server: Server,
    hosts: Arc<berth_dashboard::Hosts>,
}

impl MetricsServer {
    /// Binds `addr` and starts serving; the hosts in `dashboard_hosts` are
    /// polled from now on.
    pub async fn start(
        addr: &str,
        dashboard_hosts: &[String],
        engine: Arc<Engine>,
        api_metrics: Arc<ApiMetrics>,
    ) -> Result<MetricsServer> {
        let (host, port) = parse_metrics_addr(addr)?;
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("metrics-addr {addr}: resolve"))?
            .collect();
        let Some(bind) = resolved.first().copied() else {
            bail!("metrics-addr {addr}: no address");
        };
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("listen on metrics-addr {bind}"))?;
        if !bind.ip().is_loopback() {
            tracing::warn!(
                "metrics-addr {bind} is not a loopback address: /metrics and the dashboard \
                 have no authentication"
            );
        }
        let specs = dashboard_hosts
            .iter()
            .map(|h| berth_dashboard::parse_host_spec(h).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?;
        let hosts = Arc::new(
            berth_dashboard::Hosts::new(specs)
                .map_err(|e| anyhow::anyhow!("dashboard-host: {e}"))?,
        );
        let service = {
            let hosts = Arc::clone(&hosts);
            tokio::task::spawn_blocking(move || {
                berth_dashboard::service(engine, &api_metrics, hosts)
            })
            .await
            .context("metrics service start-up task")?
        };
        hosts.start();
        let limits = berth_api::Limits {
            max_connections: MAX_CONNECTIONS,
            ..berth_api::Limits::default()
        };
        let server = Server::with_limits(service, limits);
        let shown = format!("http://{}", listener.local_addr().unwrap_or(bind));
        tracing::info!("metrics and dashboard on {shown}");
        server.serve(listener, shown);
        Ok(MetricsServer { server, hosts })
    }

    /// Stops polling and serving (daemon shutdown).
    pub async fn shutdown(self, grace: std::time::Duration) {
        self.hosts.stop();
        self.server.shutdown(grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_like_dockerd() {
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9323").unwrap(),
            ("127.0.0.1".into(), 9323)
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9323").unwrap(),
            ("::1".into(), 9323)
        );
        assert_eq!(
            parse_metrics_addr("localhost:1").unwrap(),
            ("localhost".into(), 1)
        );
        assert!(parse_metrics_addr("9323").is_err());
        assert!(parse_metrics_addr(":9323").is_err());
        assert!(parse_metrics_addr("h:x").is_err());
    }
}
