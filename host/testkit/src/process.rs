//! Child processes waited on with a time limit, so that a process that hangs fails its
//! test with what it printed instead of stalling the whole suite.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a test waits for a process it expects to finish before killing it.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(600);

/// Runs commands like [`Command::output`], bounded in time.
pub trait CommandExt {
    /// Runs the command with piped stdout and stderr and waits at most `limit` for it;
    /// a process still running then is killed and the test panics with its output.
    fn output_within(&mut self, limit: Duration) -> Output;
}

impl CommandExt for Command {
    fn output_within(&mut self, limit: Duration) -> Output {
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.get_program()));
        wait_within(child, limit)
    }
}

/// Waits at most `limit` for `child` to exit and collects what it wrote to the pipes
/// it was given; a process still running then is killed and the test panics with
/// its output.
pub fn wait_within(mut child: Child, limit: Duration) -> Output {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("the child's status") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the process {} ran past its limit of {limit:?} and was killed; stderr:\n{}",
            child.id(),
            String::from_utf8_lossy(&stderr.join().unwrap_or_default())
        )
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Reads a pipe to its end on a thread of its own, so that a chatty child never
/// blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
