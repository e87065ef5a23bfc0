//! The control protocol (`proto/fungi/cluster/v1/cluster.proto`); the generated code is
//! committed and checked against the proto file by a test.

#![allow(missing_docs, unreachable_pub, clippy::all)]

include!("proto/fungi.cluster.v1.rs");
