//! Fungi's distributed mode: a JobManager and TaskManagers.
//!
//! - **Control** (tonic, `proto/fungi/cluster/v1/cluster.proto`): each TaskManager holds
//!   one bidirectional session with the JobManager: it registers (version, slots, data
//!   address) and heartbeats; the JobManager deploys attempts of jobs, cancels them and
//!   drives their checkpoints on the same session. Losing the session or its heartbeats
//!   loses the TaskManager.
//! - **Deployment**: the JobManager plans a job's [`JobSpec`] (the binary's
//!   [`Planner`]), places subtask `i` of every chain on slot `i` (slots spread over the
//!   TaskManagers), and sends every TaskManager the spec, the plan's fingerprint and the
//!   placement. Each plans the spec again, refuses a different fingerprint, and starts
//!   only its subtasks ([`fungi_execution::executor::LocalExecutor::start_part`]).
//! - **Data** (Arrow Flight): a channel between subtasks on different TaskManagers is
//!   one `DoPut` stream from the producer's TaskManager to the consumer's, carrying the
//!   channel's messages in order ([`codec`]); the receiving end feeds the consumer's
//!   bounded channel and stops reading when it is full, so HTTP/2 flow control holds
//!   the producer back (backpressure per channel, bounded memory on both sides).
//!   Subtasks on one TaskManager keep in-process channels.
//! - **Checkpoints**: the JobManager runs the job's coordinator; triggers and
//!   completions go to the TaskManagers on their sessions, snapshots come back on them.
//!   Operators' own checkpoint files go to the job's checkpoint directory, which every
//!   process must reach (a shared directory, or object storage).

pub mod artifacts;
pub mod client;
mod codec;
mod exchange;
pub mod ha;
pub mod jobmanager;
mod metrics;
mod probes;
mod proto;
pub mod spec;
pub mod taskmanager;
#[cfg(test)]
mod tests;
mod tls;

pub use client::ClusterClient;
pub use proto::{
    Artifact, Assignment, ClusterStatus, JobEvent, JobStatus, OperatorCount, PartStats,
    TaskManagerStatus,
};
pub use spec::{JobSpec, Planner, fingerprint};
pub use tls::{Tls, TlsFiles};

/// Fungi's version, as TaskManagers and the JobManager compare it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often a TaskManager heartbeats.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod proto_tests {
    /// The committed generated code is what `tonic-prost-build` makes of the proto file
    /// now (needs `protoc`, installed by `scripts/install-test-services.sh`).
    #[test]
    fn the_generated_code_matches_the_proto_file() {
        let root = fungi_testkit::repo_root();
        let out = tempfile::tempdir().unwrap();
        tonic_prost_build::configure()
            .out_dir(out.path())
            .compile_protos(
                &[root.join("proto/fungi/cluster/v1/cluster.proto")],
                &[root.join("proto")],
            )
            .expect("protoc and tonic-prost-build compile the proto file");
        let fresh = std::fs::read_to_string(out.path().join("fungi.cluster.v1.rs")).unwrap();
        let committed = include_str!("proto/fungi.cluster.v1.rs");
        if fresh != committed {
            let kept = std::env::temp_dir().join("fungi.cluster.v1.rs");
            std::fs::write(&kept, &fresh).unwrap();
            panic!(
                "host/cluster/src/proto/fungi.cluster.v1.rs is stale: copy {} over it",
                kept.display()
            );
        }
    }
}
