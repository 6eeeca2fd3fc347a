//! Handler panics become the emulator's own 500 error; the server keeps serving.

use std::any::Any;

use axum::response::Response;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

/// Renders the emulator's 500 body for a caught panic and logs the panic message.
#[derive(Clone, Copy, Debug)]
pub struct PanicRenderer(pub fn() -> Response);

impl ResponseForPanic for PanicRenderer {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(&mut self, err: Box<dyn Any + Send + 'static>) -> Response {
        let message = err
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| err.downcast_ref::<&str>().copied())
            .unwrap_or("non-string panic payload");
        tracing::error!(panic = message, "emulator handler panicked");
        (self.0)()
    }
}

/// Catches handler panics and answers with the emulator's own 500 error shape; the server keeps running.
pub fn catch_panic_layer(render: fn() -> Response) -> CatchPanicLayer<PanicRenderer> {
    CatchPanicLayer::custom(PanicRenderer(render))
}
