//! WASI's `wasi:io/poll` and `wasi:io/streams` with the call's deadline: the calls that
//! can block (waiting on pollables — which is how a guest sleeps —, blocking reads,
//! writes, flushes and splices) wait at most until the plugin call's time limit, then
//! stop the call with the same trap as the epoch deadline (`Trap::Interrupt`).
//!
//! Epoch interruption stops guest code, not the host while it waits on the guest's
//! behalf: without this, a guest blocked in `sleep` or in a read from an allowed socket
//! would run until the host returned, or forever. These implementations replace
//! wasmtime-wasi's synchronous ones in the linker (same interfaces, same resources) and
//! delegate to its asynchronous ones under a timeout; everything that does not block is
//! passed through. Links in granted directories are refused (`not-permitted`).

use std::time::Instant;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use crate::host::HostState;

/// The I/O view of a store during a call: its resources and the call's deadline.
pub(crate) struct GuardedIo<'a> {
    table: &'a mut ResourceTable,
    deadline: Option<Instant>,
}

/// [`HasData`] for [`GuardedIo`].
pub(crate) struct HasGuardedIo;

impl HasData for HasGuardedIo {
    type Data<'a> = GuardedIo<'a>;
}

/// The guarded view of a store's state.
pub(crate) fn view(state: &mut HostState) -> GuardedIo<'_> {
    GuardedIo {
        table: &mut state.table,
        deadline: state.call_deadline,
    }
}

/// The version of `wasi:filesystem` the linker's WASI implements.
const WASI_FILESYSTEM: &str = "wasi:filesystem/types@0.2.12";

/// Replaces the blocking parts of WASI I/O in `linker` (which already holds
/// wasmtime-wasi's synchronous WASI) with the deadline-aware ones, and refuses links:
/// a symbolic or hard link made in a granted directory could point outside it, and
/// although the guest cannot follow it, any host process reading the directory would.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    use wasmtime_wasi::filesystem::Descriptor;
    use wasmtime_wasi::p2::bindings::sync::filesystem::types::{ErrorCode, PathFlags};
    linker.allow_shadowing(true);
    poll::add_to_linker::<HostState, HasGuardedIo>(linker, view)?;
    streams::add_to_linker::<HostState, HasGuardedIo>(linker, view)?;
    let mut filesystem = linker.instance(WASI_FILESYSTEM)?;
    filesystem.func_wrap(
        "[method]descriptor.symlink-at",
        |_, (_, _, _): (Resource<Descriptor>, String, String)| {
            Ok((Err::<(), _>(ErrorCode::NotPermitted),))
        },
    )?;
    filesystem.func_wrap(
        "[method]descriptor.link-at",
        |_,
         (_, _, _, _, _): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| { Ok((Err::<(), _>(ErrorCode::NotPermitted),)) },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What an interrupted wait reports (the epoch deadline's trap, so that the error is
/// classified as the call time limit).
fn interrupted() -> wasmtime::Error {
    wasmtime::Error::from(wasmtime::Trap::Interrupt)
}

/// Runs `f`, a wait on the guest's behalf, until `deadline` at most (`None` when it
/// passed first).
fn wait_until<R>(deadline: Option<Instant>, f: impl std::future::Future<Output = R>) -> Option<R> {
    match deadline {
        None => Some(in_tokio(f)),
        Some(deadline) => {
            in_tokio(async move { tokio::time::timeout_at(deadline.into(), f).await.ok() })
        }
    }
}

/// [`wait_until`] for a stream operation: a passed deadline is the call's trap.
fn wait_stream<R>(
    deadline: Option<Instant>,
    f: impl std::future::Future<Output = StreamResult<R>>,
) -> StreamResult<R> {
    wait_until(deadline, f).unwrap_or_else(|| Err(StreamError::Trap(interrupted())))
}

impl poll::Host for GuardedIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        wait_until(self.deadline, async_poll::Host::poll(self.table, pollables))
            .unwrap_or_else(|| Err(interrupted()))
    }
}

impl poll::HostPollable for GuardedIo<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll::HostPollable::ready(self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        wait_until(
            self.deadline,
            async_poll::HostPollable::block(self.table, pollable),
        )
        .unwrap_or_else(|| Err(interrupted()))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, pollable)
    }
}

impl streams::Host for GuardedIo<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostOutputStream for GuardedIo<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        streams::HostOutputStream::drop(self.table, stream)
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        wait_stream(
            self.deadline,
            AsyncOutput::blocking_write_and_flush(self.table, stream, bytes),
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        wait_stream(
            self.deadline,
            AsyncOutput::blocking_write_zeroes_and_flush(self.table, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        wait_stream(
            self.deadline,
            AsyncOutput::blocking_flush(self.table, stream),
        )
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        wait_stream(
            self.deadline,
            AsyncOutput::blocking_splice(self.table, dst, src, len),
        )
    }
}

impl streams::HostInputStream for GuardedIo<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        streams::HostInputStream::drop(self.table, stream)
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        wait_stream(
            self.deadline,
            AsyncInput::blocking_read(self.table, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        wait_stream(
            self.deadline,
            AsyncInput::blocking_skip(self.table, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}
