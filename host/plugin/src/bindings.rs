//! Host bindings generated from `wit/` (the only place the contract is written).
//!
//! One module per world a plugin can target; the interfaces they share (`types`, `host`)
//! are generated once, in `scalar`, and reused by the others.

#![allow(missing_docs, unreachable_pub, clippy::all)]

pub(crate) mod scalar {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "scalar-udf",
    });
}

pub(crate) mod aggregate {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "aggregate-udf",
        with: {
            "fungi:plugin/host": super::scalar::fungi::plugin::host,
            "fungi:plugin/types": super::scalar::fungi::plugin::types,
        },
    });
}

pub(crate) mod table {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "table-udf",
        with: {
            "fungi:plugin/host": super::scalar::fungi::plugin::host,
            "fungi:plugin/types": super::scalar::fungi::plugin::types,
        },
    });
}

pub(crate) mod source {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "source-connector",
        with: {
            "fungi:plugin/host": super::scalar::fungi::plugin::host,
            "fungi:plugin/types": super::scalar::fungi::plugin::types,
        },
    });
}

pub(crate) mod sink {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sink-connector",
        with: {
            "fungi:plugin/host": super::scalar::fungi::plugin::host,
            "fungi:plugin/types": super::scalar::fungi::plugin::types,
        },
    });
}

/// The contract version this host implements (`package fungi:plugin@...` in `wit/`).
pub const CONTRACT_VERSION: &str = "0.1.0";
