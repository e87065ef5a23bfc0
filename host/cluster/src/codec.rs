//! `Message`s as Arrow Flight data: batches as Arrow IPC (schema once per change,
//! dictionaries as they change), control messages in `app_metadata` of a frame with no
//! IPC header. One channel's messages are one Flight stream, so their order is kept.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_flight::FlightData;
use bytes::Bytes;
use fungi_common::Message;
use fungi_common::compact::compact_views;
use fungi_common::ids::CheckpointId;
use fungi_common::message::{CheckpointBarrier, LatencyMarker, Watermark};

const WATERMARK: u8 = 1;
const IDLE: u8 = 2;
const BARRIER: u8 = 3;
const LATENCY: u8 = 4;
const END: u8 = 5;

/// A control message as bytes: a tag and up to two little-endian integers.
fn control(tag: u8, a: i64, b: i64) -> Bytes {
    let mut out = Vec::with_capacity(17);
    out.push(tag);
    out.extend_from_slice(&a.to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
    Bytes::from(out)
}

/// Turns one channel's messages into Flight data.
#[derive(Debug)]
pub(crate) struct Encoder {
    generator: IpcDataGenerator,
    tracker: Option<DictionaryTracker>,
    options: IpcWriteOptions,
    context: IpcWriteContext,
    schema: Option<SchemaRef>,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut context = IpcWriteContext::default();
        // Each body starts with the capacity of the previous one instead of growing by
        // doubling (a copy and fresh pages per step): a channel's batches are alike.
        context.set_reserve_scratch(true);
        Encoder {
            generator: IpcDataGenerator::default(),
            tracker: None,
            options: IpcWriteOptions::default(),
            context,
            schema: None,
        }
    }
}

impl Encoder {
    /// Appends the frames of `message` to `out`.
    pub(crate) fn encode(
        &mut self,
        message: Message,
        out: &mut Vec<FlightData>,
    ) -> Result<(), ArrowError> {
        let metadata = match message {
            Message::Batch(batch) => {
                // A partition's share of a larger batch would carry all of its strings.
                let batch = compact_views(batch)?;
                if self.schema.as_ref() != Some(batch.schema_ref()) {
                    // The tracker assigns the dictionary ids the schema message names.
                    let mut tracker = DictionaryTracker::new(false);
                    let schema = self.generator.schema_to_bytes_with_dictionary_tracker(
                        batch.schema_ref(),
                        &mut tracker,
                        &self.options,
                    );
                    out.push(schema.into());
                    self.schema = Some(batch.schema());
                    self.tracker = Some(tracker);
                }
                let tracker = self
                    .tracker
                    .get_or_insert_with(|| DictionaryTracker::new(false));
                let (dictionaries, encoded) =
                    self.generator
                        .encode(&batch, tracker, &self.options, &mut self.context)?;
                out.extend(dictionaries.into_iter().map(FlightData::from));
                out.push(encoded.into());
                return Ok(());
            }
            Message::Watermark(Watermark::EventTime(t)) => control(WATERMARK, t, 0),
            Message::Watermark(Watermark::Idle) => control(IDLE, 0, 0),
            Message::Barrier(b) => control(BARRIER, b.id.get() as i64, b.timestamp),
            Message::LatencyMarker(m) => control(LATENCY, m.emitted_micros, 0),
            Message::EndOfStream => control(END, 0, 0),
        };
        out.push(FlightData {
            app_metadata: metadata,
            ..Default::default()
        });
        Ok(())
    }
}

/// Turns one channel's Flight data back into messages.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    schema: Option<SchemaRef>,
    dictionaries: HashMap<i64, ArrayRef>,
}

impl Decoder {
    /// The message `data` completes, if any (a schema or a dictionary completes none).
    pub(crate) fn decode(&mut self, data: FlightData) -> Result<Option<Message>, ArrowError> {
        if data.data_header.is_empty() {
            return decode_control(&data.app_metadata).map(Some);
        }
        let message = arrow::ipc::root_as_message(&data.data_header)
            .map_err(|e| ArrowError::IpcError(format!("not an Arrow IPC message: {e}")))?;
        match message.header_type() {
            arrow::ipc::MessageHeader::Schema => {
                self.schema = Some(Arc::new(Schema::try_from(&data)?));
                self.dictionaries.clear();
                Ok(None)
            }
            arrow::ipc::MessageHeader::DictionaryBatch => {
                let schema = self.schema()?;
                let batch = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| ArrowError::IpcError("a bad dictionary batch".into()))?;
                arrow::ipc::reader::read_dictionary(
                    &Buffer::from(data.data_body),
                    batch,
                    &schema,
                    &mut self.dictionaries,
                    &message.version(),
                )?;
                Ok(None)
            }
            arrow::ipc::MessageHeader::RecordBatch => {
                let header = message
                    .header_as_record_batch()
                    .ok_or_else(|| ArrowError::IpcError("a bad record batch".into()))?;
                // The body is shared, not copied: only buffers that are misaligned in the
                // received frame (fixed-width values, views, offsets) are copied into
                // aligned ones; string and binary bytes stay where they arrived.
                let batch = arrow::ipc::reader::read_record_batch(
                    &Buffer::from(data.data_body),
                    header,
                    self.schema()?,
                    &self.dictionaries,
                    None,
                    &message.version(),
                )?;
                Ok(Some(Message::Batch(batch)))
            }
            other => Err(ArrowError::IpcError(format!(
                "unexpected Arrow IPC message {other:?}"
            ))),
        }
    }

    fn schema(&self) -> Result<SchemaRef, ArrowError> {
        self.schema
            .clone()
            .ok_or_else(|| ArrowError::IpcError("data before its schema".into()))
    }
}

fn decode_control(bytes: &[u8]) -> Result<Message, ArrowError> {
    let int = |at: usize| -> Result<i64, ArrowError> {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
            .ok_or_else(|| ArrowError::IpcError("a truncated control message".into()))
    };
    Ok(match bytes.first() {
        Some(&WATERMARK) => Message::Watermark(Watermark::EventTime(int(1)?)),
        Some(&IDLE) => Message::Watermark(Watermark::Idle),
        Some(&BARRIER) => Message::Barrier(CheckpointBarrier {
            id: CheckpointId(int(1)? as u64),
            timestamp: int(9)?,
        }),
        Some(&LATENCY) => Message::LatencyMarker(LatencyMarker {
            emitted_micros: int(1)?,
        }),
        Some(&END) => Message::EndOfStream,
        other => {
            return Err(ArrowError::IpcError(format!(
                "unknown control message {other:?}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        AsArray, DictionaryArray, Int64Array, RecordBatch, StringArray, StringViewArray,
        UInt32Array,
    };
    use arrow::datatypes::Int32Type;

    #[test]
    fn messages_survive_the_trip_in_order() {
        let numbers = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .unwrap();
        let words: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let dict = RecordBatch::try_from_iter([("w", Arc::new(words) as ArrayRef)]).unwrap();
        let text = RecordBatch::try_from_iter([(
            "s",
            Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef,
        )])
        .unwrap();
        let sent = vec![
            Message::Batch(numbers.clone()),
            Message::Watermark(Watermark::EventTime(-5)),
            Message::Batch(numbers),
            Message::Barrier(CheckpointBarrier {
                id: CheckpointId::FINAL,
                timestamp: 42,
            }),
            Message::Batch(dict),
            Message::LatencyMarker(LatencyMarker { emitted_micros: 7 }),
            Message::Batch(text),
            Message::Watermark(Watermark::Idle),
            Message::EndOfStream,
        ];
        let mut encoder = Encoder::default();
        let mut frames = Vec::new();
        for m in sent.clone() {
            encoder.encode(m, &mut frames).unwrap();
        }
        let mut decoder = Decoder::default();
        let got: Vec<Message> = frames
            .into_iter()
            .filter_map(|f| decoder.decode(f).unwrap())
            .collect();
        assert_eq!(format!("{sent:?}"), format!("{got:?}"));
    }

    #[test]
    fn a_share_of_a_view_batch_carries_only_its_own_bytes() {
        let long = |i: usize| format!("a string longer than twelve bytes, number {i}");
        let strings: StringViewArray = (0..1000).map(|i| Some(long(i))).collect();
        let whole = RecordBatch::try_from_iter([("s", Arc::new(strings) as ArrayRef)]).unwrap();
        // Every tenth row, as a hash partition's share would be: its views still point
        // into the whole batch's data.
        let rows = UInt32Array::from_iter_values((0..1000).step_by(10));
        let share = arrow::compute::take_record_batch(&whole, &rows).unwrap();
        let mut frames = Vec::new();
        Encoder::default()
            .encode(Message::Batch(share.clone()), &mut frames)
            .unwrap();
        let body: usize = frames.iter().map(|f| f.data_body.len()).sum();
        let used = share.column(0).as_string_view().total_buffer_bytes_used();
        assert!(
            body < used * 2,
            "{body} bytes sent for {used} bytes of strings"
        );
        let mut decoder = Decoder::default();
        let got: Vec<Message> = frames
            .into_iter()
            .filter_map(|f| decoder.decode(f).unwrap())
            .collect();
        assert_eq!(format!("{:?}", [Message::Batch(share)]), format!("{got:?}"));
    }

    #[test]
    fn a_body_at_any_offset_in_the_received_frame_decodes() {
        // The body is shared with the received frame, wherever it starts there: every
        // misalignment of fixed-width, view and offset buffers gives the same batch.
        let long = |i: i64| format!("a string longer than twelve bytes, number {i}");
        let batch = RecordBatch::try_from_iter([
            (
                "n",
                Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef,
            ),
            (
                "v",
                Arc::new((0..100).map(|i| Some(long(i))).collect::<StringViewArray>()) as ArrayRef,
            ),
            (
                "s",
                Arc::new((0..100).map(|i| Some(long(i))).collect::<StringArray>()) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut frames = Vec::new();
        Encoder::default()
            .encode(Message::Batch(batch.clone()), &mut frames)
            .unwrap();
        for shift in 0..16 {
            let mut decoder = Decoder::default();
            let got: Vec<Message> = frames
                .iter()
                .cloned()
                .filter_map(|mut f| {
                    let mut shifted = vec![0u8; shift];
                    shifted.extend_from_slice(&f.data_body);
                    f.data_body = Bytes::from(shifted).slice(shift..);
                    decoder.decode(f).unwrap()
                })
                .collect();
            assert_eq!(
                format!("{:?}", [Message::Batch(batch.clone())]),
                format!("{got:?}"),
                "shifted by {shift}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut decoder = Decoder::default();
        for metadata in [&b""[..], &[9u8][..], &[1u8, 2][..]] {
            let frame = FlightData {
                app_metadata: Bytes::copy_from_slice(metadata),
                ..Default::default()
            };
            assert!(decoder.decode(frame).is_err());
        }
        let frame = FlightData {
            data_header: Bytes::from_static(b"not flatbuffers"),
            ..Default::default()
        };
        assert!(decoder.decode(frame).is_err());
    }
}
