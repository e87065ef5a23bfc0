//! A plugin's stdout and stderr: captured, capped, and logged by the host.
//!
//! The guest never writes to the host's terminal. What it prints goes into a buffer of
//! at most `cap` bytes per call (the rest is counted and dropped, never an error, so a
//! chatty plugin is not killed for it); after each call the host takes the text, logs
//! it, and attaches it to the error if the call failed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Captured {
    text: BytesMut,
    dropped: usize,
}

/// A capped capture buffer shared by a store's stdout and stderr.
#[derive(Debug, Clone)]
pub(crate) struct CapturedOutput {
    inner: Arc<Mutex<Captured>>,
    cap: usize,
}

impl CapturedOutput {
    pub(crate) fn new(cap: usize) -> Self {
        CapturedOutput {
            inner: Arc::default(),
            cap,
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut c = self.inner.lock().expect("output lock");
        let room = self.cap.saturating_sub(c.text.len());
        let kept = bytes.len().min(room);
        c.text.extend_from_slice(&bytes[..kept]);
        c.dropped += bytes.len() - kept;
    }

    /// Takes what was printed since the last call (lossy UTF-8, with a note of what was
    /// dropped).
    pub(crate) fn take(&self) -> String {
        let mut c = self.inner.lock().expect("output lock");
        let mut text = String::from_utf8_lossy(&c.text).into_owned();
        if c.dropped > 0 {
            text.push_str(&format!(" [... {} more bytes dropped]", c.dropped));
        }
        c.text.clear();
        c.dropped = 0;
        text
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let out = CapturedOutput::new(5);
        out.append(b"hello world");
        assert_eq!(out.take(), "hello [... 6 more bytes dropped]");
        assert_eq!(out.take(), "");
    }
}
