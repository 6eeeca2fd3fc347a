//! Serving a router on a tokio task with graceful shutdown.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server. Dropping it without calling [`ServerHandle::shutdown`] also asks the server to stop
/// (without waiting), so a forgotten handle never leaks a listening socket.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ServerHandle {
    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, returns when the server task ended.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::error!(error = %err, "emulator server task failed");
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `addr` (port 0 allowed) and serves `router` on a tokio task.
///
/// Handlers can extract `axum::extract::ConnectInfo<SocketAddr>` (the peer address).
pub async fn serve(addr: SocketAddr, router: axum::Router) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "emulator server stopped with an error");
        }
    });
    tracing::debug!(%addr, "emulator server listening");
    Ok(ServerHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}
