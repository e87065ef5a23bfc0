//! Avro records (Flink's `avro` format): each record is one Avro binary datum, without a
//! header or schema prefix, written with the schema derived from the table's columns.
//!
//! Decoding and encoding are columnar (`arrow-avro`): many records decode into one batch,
//! a batch encodes into one buffer with row boundaries. The decoder reads a stream of
//! framed records, so every record gets a 5-byte Confluent frame with a fixed schema id
//! while the payloads are gathered into one buffer (they are copied into it anyway).

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, CONFLUENT_MAGIC, Fingerprint, FingerprintAlgorithm, SchemaStore,
};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::AvroBinaryFormat;
use fungi_common::{FungiError, Result};

/// The schema id of the synthetic frame put before every record.
const FRAME_ID: u32 = 0;
/// The frame: Confluent's magic byte and [`FRAME_ID`], big-endian.
const FRAME: [u8; 5] = [CONFLUENT_MAGIC[0], 0, 0, 0, 0];

/// The Avro schema derived from `schema` (nullable columns become unions with null).
pub fn avro_schema(schema: &SchemaRef) -> Result<AvroSchema> {
    AvroSchema::try_from(schema.as_ref()).map_err(|e| {
        FungiError::Config(format!(
            "format 'avro': the table's columns have no Avro schema: {e}"
        ))
    })
}

fn decoder(schema: &SchemaRef, rows: usize) -> std::result::Result<Decoder, String> {
    let avro = avro_schema(schema).map_err(|e| e.to_string())?;
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(Fingerprint::Id(FRAME_ID), avro.clone())
        .map_err(|e| e.to_string())?;
    ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_reader_schema(avro)
        .with_batch_size(rows.max(1))
        .build_decoder()
        .map_err(|e| e.to_string())
}

/// The decoded batch with the table's schema (the decoder names types its own way, e.g.
/// field metadata); columns of another type are cast.
fn conform(schema: &SchemaRef, batch: RecordBatch) -> std::result::Result<RecordBatch, String> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(|e| e.to_string())
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// Decodes `records` into one batch, all or nothing: an error, or a record that is not
/// exactly one datum of the schema, fails the call.
fn decode_all(
    schema: &SchemaRef,
    records: &[&[u8]],
) -> std::result::Result<Option<RecordBatch>, String> {
    let mut framed = Vec::with_capacity(records.iter().map(|r| r.len() + FRAME.len()).sum());
    for r in records {
        framed.extend_from_slice(&FRAME);
        framed.extend_from_slice(r);
    }
    let mut decoder = decoder(schema, records.len())?;
    let consumed = decoder.decode(&framed).map_err(|e| e.to_string())?;
    if consumed < framed.len() {
        return Err(format!(
            "{} bytes left after the last complete record",
            framed.len() - consumed
        ));
    }
    let batch = decoder.flush().map_err(|e| e.to_string())?;
    match batch {
        Some(b) if b.num_rows() != records.len() => Err(format!(
            "{} rows from {} records",
            b.num_rows(),
            records.len()
        )),
        Some(b) => conform(schema, b).map(Some),
        None if records.is_empty() => Ok(None),
        None => Err("no rows decoded".into()),
    }
}

/// Decodes whole records: all at once, and one by one only when that fails, to tell the
/// bad ones. Returns the good rows and `(record index, reason)` of each bad one.
pub fn decode_records(schema: &SchemaRef, records: &[&[u8]]) -> super::Decoded {
    if let Ok(batch) = decode_all(schema, records) {
        return (batch, Vec::new());
    }
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match decode_all(schema, std::slice::from_ref(r)) {
            Ok(Some(b)) => good.push(b),
            Ok(None) => bad.push((i, "an empty record".into())),
            Err(reason) => bad.push((i, format!("not an Avro record of the table: {reason}"))),
        }
    }
    let batch = (!good.is_empty()).then(|| {
        arrow::compute::concat_batches(schema, &good).expect("batches of the same schema")
    });
    (batch, bad)
}

/// Encodes every row of `batch` as one Avro datum.
pub fn encode_rows(batch: &RecordBatch) -> Result<super::EncodedRows> {
    let mut encoder = WriterBuilder::new(batch.schema().as_ref().clone())
        .build_encoder::<AvroBinaryFormat>()
        .map_err(|e| FungiError::Config(format!("format 'avro': {e}")))?;
    encoder
        .encode(batch)
        .map_err(|e| FungiError::Internal(format!("format 'avro': cannot encode a batch: {e}")))?;
    let rows = encoder.flush();
    let start = rows.offsets().first().copied().unwrap_or(0);
    let ends = rows.offsets().iter().skip(1).map(|o| o - start);
    Ok(super::EncodedRows::from_ends(
        rows.bytes()[start..].to_vec(),
        ends,
    ))
}
