//! An axum router on a loopback port, served by a runtime of its own: the bench drives the
//! rejitter from plain threads, and a fake must answer while the driver blocks.

use anyhow::{Context, Result};
use axum::serve::ListenerExt;
use axum::Router;
use std::net::{Ipv4Addr, SocketAddr};

/// Serves until dropped.
pub struct Served {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Served {
    /// `router` is given the address it will be served on.
    pub fn start(router: impl FnOnce(SocketAddr) -> Router) -> Result<Served> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let router = router(addr);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-fake")
            .enable_all()
            .build()
            .context("starting a runtime for a fake")?;
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    eprintln!("a bench fake could not listen on {addr}: {error}");
                    return;
                }
            };
            // Small requests and replies: without TCP_NODELAY, Nagle and delayed ACKs add
            // ~40 ms stalls.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("a bench fake on {addr} stopped: {error}");
            }
        });
        Ok(Served {
            addr,
            runtime: Some(runtime),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Without waiting: a `/next` poll may be blocked for good, and a drop may happen on a
        // runtime's thread (the SDK test), where waiting is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
