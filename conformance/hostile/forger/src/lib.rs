//! Results the host must not trust: Arrow IPC with compressed bodies (what arrow-rs's
//! writer makes with LZ4 on, as a well-meaning author might), one whose compressed body
//! claims a terabyte once uncompressed, and one whose buffers point past its body.
//! Each function takes a BIGINT and returns one.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "fungi:plugin/scalar-udf@0.1.0",
    generate_all,
});

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use exports::fungi::plugin::{plugin, scalar};
use fungi::plugin::types::{Capabilities, FunctionSignature, Manifest, PluginError, Volatility};

struct Forger;

impl plugin::Guest for Forger {
    fn describe() -> Manifest {
        Manifest {
            name: "forger".into(),
            version: "0.1.0".into(),
            description: "forges its results".into(),
            capabilities: Capabilities {
                network: vec![],
                directories: vec![],
            },
        }
    }
}

fn schema(name: &str) -> Vec<u8> {
    let schema = Schema::new(vec![Field::new(name, DataType::Int64, true)]);
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

const FUNCTIONS: [&str; 3] = ["compressed", "inflated", "overreach"];

impl scalar::Guest for Forger {
    type ScalarFunction = Forged;
    fn functions() -> Vec<FunctionSignature> {
        FUNCTIONS
            .iter()
            .map(|name| FunctionSignature {
                name: name.to_string(),
                arguments: schema("arg0"),
                returns: schema("result"),
                volatility: Volatility::Immutable,
            })
            .collect()
    }
}

struct Forged {
    name: String,
}

/// `rows` values as an IPC stream, LZ4-compressed when `lz4`.
fn result(rows: usize, lz4: bool) -> Vec<u8> {
    let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let batch = RecordBatch::try_from_iter(vec![("result", column)]).unwrap();
    let mut options = arrow_ipc::writer::IpcWriteOptions::default();
    if lz4 {
        options = options
            .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
            .unwrap();
    }
    let mut out = Vec::new();
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new_with_options(&mut out, &batch.schema(), options)
            .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

/// Where the body of the stream's record batch starts (after the schema message and
/// the batch's header).
fn body_start(bytes: &[u8]) -> usize {
    let mut pos = 0;
    let mut bodies = 0;
    loop {
        let mut len = i32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        pos += 4;
        if len == -1 {
            len = i32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
            pos += 4;
        }
        let header = arrow_ipc::root_as_message(&bytes[pos..pos + len as usize]).unwrap();
        pos += len as usize;
        if header.header_type() == arrow_ipc::MessageHeader::RecordBatch {
            return pos;
        }
        pos += header.bodyLength() as usize;
        bodies += 1;
        assert!(bodies < 4);
    }
}

impl scalar::GuestScalarFunction for Forged {
    fn create(
        name: String,
        _config: Vec<(String, String)>,
    ) -> Result<scalar::ScalarFunction, PluginError> {
        Ok(scalar::ScalarFunction::new(Forged { name }))
    }

    fn call(&self, args: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        // The host sends one batch; its row count is all we need: decode it plainly.
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(args), None)
            .map_err(|e| PluginError::InvalidInput(e.to_string()))?;
        let rows = reader
            .into_iter()
            .next()
            .transpose()
            .map_err(|e| PluginError::InvalidInput(e.to_string()))?
            .map_or(0, |b| b.num_rows());
        Ok(match self.name.as_str() {
            "compressed" => result(rows, true),
            "inflated" => {
                // A compressed body starts with its uncompressed length: claim 1 TiB.
                let mut bytes = result(rows, true);
                let at = body_start(&bytes);
                bytes[at..at + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
                bytes
            }
            _ => {
                // An uncompressed result whose body is cut short: its buffers point past
                // the bytes that arrive.
                let mut bytes = result(rows, false);
                let at = body_start(&bytes);
                bytes.truncate(at + 8);
                bytes
            }
        })
    }
}

export!(Forger);
