//! Arrow IPC from a peer the host does not trust (a plugin's results and states; later
//! the hosts of a cluster): checked before arrow-rs decodes it, so that no size or
//! offset declared inside the data can make the host allocate without bound, read out of
//! range, or panic.
//!
//! The checks walk the stream's messages themselves: every flatbuffer header is verified
//! (arrow's flatbuffer verifier), every body lies within
//! the bytes received, every buffer within its body, row and element counts stay under
//! the limits, and compressed bodies are refused (a compressed body carries its
//! uncompressed length, which a decoder would trust). Then arrow-rs decodes with full
//! validation (offsets, UTF-8), and what it materialised is measured against the limit.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::MessageHeader;

/// Bounds on one IPC stream from an untrusted peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcLimits {
    /// Bytes the decoded batch may hold (its buffers as materialised by the host).
    pub max_bytes: usize,
    /// Rows of a batch.
    pub max_rows: usize,
    /// Elements of any one array, nested children included.
    pub max_elements: usize,
    /// Messages in the stream (schema, dictionaries, batch).
    pub max_messages: usize,
}

impl Default for IpcLimits {
    fn default() -> Self {
        IpcLimits {
            max_bytes: 64 << 20,
            max_rows: 1 << 24,
            max_elements: 1 << 26,
            max_messages: 64,
        }
    }
}

/// Why an untrusted stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UntrustedIpcError {
    /// The bytes are not a well-formed Arrow IPC stream.
    #[error("malformed Arrow IPC: {0}")]
    Malformed(String),
    /// A body is compressed: refused, peers send uncompressed IPC.
    #[error(
        "compressed Arrow IPC is refused: peers send uncompressed record batches (the \
         uncompressed length a compressed body declares cannot be trusted)"
    )]
    Compressed,
    /// A size declared in the stream, or what decoding it would materialise, is over a
    /// limit.
    #[error("{what} of {value} is over the limit of {limit}")]
    Limit {
        /// What was counted.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },
}

/// Decodes a stream of at most one record batch (after its schema and dictionaries)
/// from an untrusted peer, within `limits`.
pub fn decode(
    bytes: Vec<u8>,
    limits: &IpcLimits,
) -> Result<(SchemaRef, Option<RecordBatch>), UntrustedIpcError> {
    check_stream(&bytes, limits)?;
    // The checks above leave arrow-rs nothing to panic on that we know of; should it
    // still, the peer's data is refused rather than the host thread unwound.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_checked(bytes)))
        .map_err(|_| UntrustedIpcError::Malformed("the decoder refused the stream".into()))?;
    let (schema, batch) = decoded.map_err(|e| UntrustedIpcError::Malformed(e.to_string()))?;
    if let Some(b) = &batch {
        let materialised = materialised_bytes(b)?;
        if materialised > limits.max_bytes {
            return Err(UntrustedIpcError::Limit {
                what: "a decoded batch",
                value: materialised as u64,
                limit: limits.max_bytes as u64,
            });
        }
    }
    Ok((schema, batch))
}

/// Bytes the columns of `batch` cover (their slices of buffers, not the capacity of the
/// buffers they share).
pub fn materialised_bytes(batch: &RecordBatch) -> Result<usize, UntrustedIpcError> {
    batch.columns().iter().try_fold(0usize, |sum, c| {
        let size = c
            .to_data()
            .get_slice_memory_size()
            .map_err(|e| UntrustedIpcError::Malformed(e.to_string()))?;
        Ok(sum.saturating_add(size))
    })
}

fn decode_checked(
    bytes: Vec<u8>,
) -> Result<(SchemaRef, Option<RecordBatch>), arrow::error::ArrowError> {
    let mut buffer = arrow::buffer::Buffer::from_vec(bytes);
    let mut decoder = arrow::ipc::reader::StreamDecoder::new().with_require_alignment(false);
    let mut batch = None;
    while !buffer.is_empty() {
        let before = buffer.len();
        match decoder.decode(&mut buffer)? {
            Some(_) if batch.is_some() => {
                return Err(arrow::error::ArrowError::IpcError(
                    "more than one record batch in the stream".into(),
                ));
            }
            Some(b) => batch = Some(b),
            None if buffer.len() == before => break,
            None => {}
        }
    }
    decoder.finish()?;
    let schema = decoder
        .schema()
        .ok_or_else(|| arrow::error::ArrowError::IpcError("no schema in the stream".into()))?;
    Ok((Arc::clone(&schema), batch))
}

fn malformed(what: impl Into<String>) -> UntrustedIpcError {
    UntrustedIpcError::Malformed(what.into())
}

fn over(what: &'static str, value: i64, limit: usize) -> Result<(), UntrustedIpcError> {
    if value < 0 {
        return Err(malformed(format!("{what} is negative ({value})")));
    }
    if value as u64 > limit as u64 {
        return Err(UntrustedIpcError::Limit {
            what,
            value: value as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

/// Walks the stream's messages and checks every declared size against the bytes and
/// the limits.
pub fn check_stream(bytes: &[u8], limits: &IpcLimits) -> Result<(), UntrustedIpcError> {
    let word = |at: usize| -> Result<i32, UntrustedIpcError> {
        bytes
            .get(at..at + 4)
            .map(|w| i32::from_le_bytes(w.try_into().expect("four bytes")))
            .ok_or_else(|| malformed("the stream ends inside a message prefix"))
    };
    let mut pos = 0usize;
    let mut messages = 0usize;
    let mut schema: Option<arrow::datatypes::Schema> = None;
    while pos < bytes.len() {
        let mut length = word(pos)?;
        pos += 4;
        if length == -1 {
            length = word(pos)?;
            pos += 4;
        }
        if length == 0 {
            // End of stream.
            return Ok(());
        }
        if length < 0 {
            return Err(malformed(format!("a message declares {length} bytes")));
        }
        let end = pos
            .checked_add(length as usize)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| malformed("a message header runs past the end of the stream"))?;
        let message = arrow::ipc::root_as_message(&bytes[pos..end])
            .map_err(|e| malformed(format!("a message header does not verify: {e}")))?;
        pos = end;
        messages += 1;
        over(
            "messages in the stream",
            messages as i64,
            limits.max_messages,
        )?;
        let body = message.bodyLength();
        if body < 0 || body as u64 > (bytes.len() - pos) as u64 {
            return Err(malformed(format!(
                "a message body of {body} bytes runs past the end of the stream"
            )));
        }
        let body = body as usize;
        if body > 0 && !pos.is_multiple_of(8) {
            return Err(malformed(
                "a message body that does not start on an 8-byte boundary",
            ));
        }
        match message.header_type() {
            MessageHeader::Schema => {
                let header = message
                    .header_as_schema()
                    .ok_or_else(|| malformed("a schema message without its header"))?;
                check_schema(header)?;
                // Checked above for everything the conversion expects.
                schema = Some(arrow::ipc::convert::fb_to_schema(header));
            }
            MessageHeader::RecordBatch => {
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| malformed("a record batch message without its header"))?;
                let schema = schema
                    .as_ref()
                    .ok_or_else(|| malformed("a record batch before the schema"))?;
                check_batch(batch, body, limits)?;
                check_layout(schema, batch)?;
            }
            MessageHeader::DictionaryBatch => {
                return Err(malformed(
                    "dictionary-encoded arrays are not accepted from peers; send plain arrays",
                ));
            }
            other => {
                return Err(malformed(format!(
                    "a message of type {other:?} (a stream holds a schema, dictionaries and \
                     record batches)"
                )));
            }
        }
        over("bytes of message bodies", body as i64, limits.max_bytes)?;
        pos += body;
    }
    Ok(())
}

/// The deepest nesting of a schema's fields.
const MAX_FIELD_DEPTH: usize = 64;

/// The most fields (nested ones included) a schema may have.
const MAX_FIELDS: usize = 10_000;

/// Checks a schema header for everything arrow-rs's conversion expects of it (each type's
/// parameters present and valid, the right number of children), so that converting it
/// cannot panic.
fn check_schema(schema: arrow::ipc::Schema<'_>) -> Result<(), UntrustedIpcError> {
    if schema.endianness() != arrow::ipc::Endianness::Little {
        return Err(malformed("a big-endian schema"));
    }
    let fields = schema
        .fields()
        .ok_or_else(|| malformed("a schema without its fields"))?;
    let mut count = 0usize;
    for field in fields.iter() {
        check_field(field, 1, &mut count)?;
    }
    Ok(())
}

fn check_field(
    field: arrow::ipc::Field<'_>,
    depth: usize,
    count: &mut usize,
) -> Result<(), UntrustedIpcError> {
    use arrow::ipc::{DateUnit, IntervalUnit, Precision, TimeUnit, Type, UnionMode};
    *count += 1;
    over("fields of a schema", *count as i64, MAX_FIELDS)?;
    over("nesting of a schema", depth as i64, MAX_FIELD_DEPTH)?;
    let name = field.name().unwrap_or_default();
    let bad = |what: &str| malformed(format!("field '{name}': {what}"));
    let int_ok = |bits: i32, _signed: bool| matches!(bits, 8 | 16 | 32 | 64);
    if field.dictionary().is_some() {
        return Err(bad(
            "dictionary-encoded arrays are not accepted from peers; send plain arrays",
        ));
    }
    let children = |n: usize| -> Result<Vec<arrow::ipc::Field<'_>>, UntrustedIpcError> {
        let list = field
            .children()
            .ok_or_else(|| bad("a nested type without its children"))?;
        if list.len() != n {
            return Err(bad(&format!("{} children where {n} belong", list.len())));
        }
        Ok(list.iter().collect())
    };
    let nested: Vec<arrow::ipc::Field<'_>> = match field.type_type() {
        Type::Null
        | Type::Bool
        | Type::Binary
        | Type::BinaryView
        | Type::LargeBinary
        | Type::Utf8
        | Type::Utf8View
        | Type::LargeUtf8 => Vec::new(),
        Type::Int => {
            let t = field
                .type_as_int()
                .ok_or_else(|| bad("an int without its width"))?;
            if !int_ok(t.bitWidth(), t.is_signed()) {
                return Err(bad("an int of an unknown width"));
            }
            Vec::new()
        }
        Type::FixedSizeBinary => {
            let t = field
                .type_as_fixed_size_binary()
                .ok_or_else(|| bad("a fixed-size binary without its width"))?;
            if t.byteWidth() < 0 {
                return Err(bad("a negative byte width"));
            }
            Vec::new()
        }
        Type::FloatingPoint => {
            let t = field
                .type_as_floating_point()
                .ok_or_else(|| bad("a float without its precision"))?;
            if !matches!(
                t.precision(),
                Precision::HALF | Precision::SINGLE | Precision::DOUBLE
            ) {
                return Err(bad("a float of an unknown precision"));
            }
            Vec::new()
        }
        Type::Date => {
            let t = field
                .type_as_date()
                .ok_or_else(|| bad("a date without its unit"))?;
            if !matches!(t.unit(), DateUnit::DAY | DateUnit::MILLISECOND) {
                return Err(bad("a date of an unknown unit"));
            }
            Vec::new()
        }
        Type::Time => {
            let t = field
                .type_as_time()
                .ok_or_else(|| bad("a time without its unit"))?;
            let ok = matches!(
                (t.bitWidth(), t.unit()),
                (32, TimeUnit::SECOND | TimeUnit::MILLISECOND)
                    | (64, TimeUnit::MICROSECOND | TimeUnit::NANOSECOND)
            );
            if !ok {
                return Err(bad("a time of an unknown width or unit"));
            }
            Vec::new()
        }
        Type::Timestamp | Type::Duration => {
            let unit = match field.type_type() {
                Type::Timestamp => field.type_as_timestamp().map(|t| t.unit()),
                _ => field.type_as_duration().map(|t| t.unit()),
            }
            .ok_or_else(|| bad("a timestamp or duration without its unit"))?;
            if !matches!(
                unit,
                TimeUnit::SECOND
                    | TimeUnit::MILLISECOND
                    | TimeUnit::MICROSECOND
                    | TimeUnit::NANOSECOND
            ) {
                return Err(bad("a time unit that does not exist"));
            }
            Vec::new()
        }
        Type::Interval => {
            let t = field
                .type_as_interval()
                .ok_or_else(|| bad("an interval without its unit"))?;
            if !matches!(
                t.unit(),
                IntervalUnit::YEAR_MONTH | IntervalUnit::DAY_TIME | IntervalUnit::MONTH_DAY_NANO
            ) {
                return Err(bad("an interval of an unknown unit"));
            }
            Vec::new()
        }
        Type::List | Type::LargeList | Type::ListView | Type::LargeListView => children(1)?,
        Type::FixedSizeList => {
            let t = field
                .type_as_fixed_size_list()
                .ok_or_else(|| bad("a fixed-size list without its size"))?;
            if t.listSize() < 0 {
                return Err(bad("a negative list size"));
            }
            children(1)?
        }
        Type::Struct_ => field
            .children()
            .map(|c| c.iter().collect())
            .unwrap_or_default(),
        Type::RunEndEncoded => children(2)?,
        Type::Map => {
            field
                .type_as_map()
                .ok_or_else(|| bad("a map without its parameters"))?;
            let entries = children(1)?;
            let pair = entries[0].children().map_or(0, |c| c.len());
            if entries[0].type_type() != Type::Struct_ || pair != 2 {
                return Err(bad("a map whose entries are not a struct of key and value"));
            }
            entries
        }
        Type::Decimal => {
            let t = field
                .type_as_decimal()
                .ok_or_else(|| bad("a decimal without its precision"))?;
            let max = match t.bitWidth() {
                32 => 9,
                64 => 18,
                128 => 38,
                256 => 76,
                _ => return Err(bad("a decimal of an unknown width")),
            };
            let (p, s) = (t.precision(), t.scale());
            if !(1..=max).contains(&p) || s > p || s < -p || s < i8::MIN as i32 {
                return Err(bad("a decimal precision or scale out of range"));
            }
            Vec::new()
        }
        Type::Union => {
            let t = field
                .type_as_union()
                .ok_or_else(|| bad("a union without its mode"))?;
            if !matches!(t.mode(), UnionMode::Dense | UnionMode::Sparse) {
                return Err(bad("a union of an unknown mode"));
            }
            let kids: Vec<arrow::ipc::Field<'_>> = field
                .children()
                .map(|c| c.iter().collect())
                .unwrap_or_default();
            if let Some(ids) = t.typeIds() {
                let ids: Vec<i32> = ids.iter().collect();
                let mut seen = std::collections::BTreeSet::new();
                let distinct = ids.iter().all(|i| (0..=127).contains(i) && seen.insert(*i));
                if ids.len() != kids.len() || !distinct {
                    return Err(bad("union type ids that do not match its children"));
                }
            } else if kids.len() > 128 {
                return Err(bad("a union of more than 128 children"));
            }
            kids
        }
        other => return Err(bad(&format!("the type {other:?}, which is not supported"))),
    };
    for child in nested {
        check_field(child, depth + 1, count)?;
    }
    Ok(())
}

/// The field nodes and buffers of a batch, consumed in the order the schema's fields
/// (depth first) lay them out.
struct Layout {
    nodes: Vec<(i64, i64)>,
    buffers: Vec<i64>,
    variadic: Vec<i64>,
}

impl Layout {
    fn node(&mut self) -> Result<(u64, u64), UntrustedIpcError> {
        if self.nodes.is_empty() {
            return Err(malformed("fewer field nodes than the schema has arrays"));
        }
        let (len, nulls) = self.nodes.remove(0);
        Ok((len as u64, nulls as u64))
    }

    /// The next buffer's length, which must hold at least `need` bytes.
    fn buffer(&mut self, need: u64, what: &str) -> Result<(), UntrustedIpcError> {
        self.typed(need, 1, what)
    }

    /// The next buffer, of elements `width` bytes wide: at least `need` bytes, and a
    /// whole number of elements (arrow-rs asserts both when it reads one).
    fn typed(&mut self, need: u64, width: u64, what: &str) -> Result<(), UntrustedIpcError> {
        if self.buffers.is_empty() {
            return Err(malformed("fewer buffers than the schema's arrays need"));
        }
        let have = self.buffers.remove(0) as u64;
        if have < need || !have.is_multiple_of(width.max(1)) {
            return Err(malformed(format!(
                "a {what} buffer of {have} bytes where its array needs {need}, in \
                 {width}-byte elements"
            )));
        }
        Ok(())
    }

    fn validity(&mut self, len: u64, nulls: u64) -> Result<(), UntrustedIpcError> {
        self.buffer(if nulls > 0 { len.div_ceil(8) } else { 0 }, "validity")
    }
}

/// Checks that each array of `batch` has the buffers its type needs, each large enough
/// for the array's declared length (the reader builds some buffers, such as validity
/// bitmaps, before it validates the array).
fn check_layout(
    schema: &arrow::datatypes::Schema,
    batch: arrow::ipc::RecordBatch<'_>,
) -> Result<(), UntrustedIpcError> {
    let mut layout = Layout {
        nodes: batch
            .nodes()
            .map(|n| n.iter().map(|n| (n.length(), n.null_count())).collect())
            .unwrap_or_default(),
        buffers: batch
            .buffers()
            .map(|b| b.iter().map(|b| b.length()).collect())
            .unwrap_or_default(),
        variadic: batch
            .variadicBufferCounts()
            .map(|v| v.iter().collect())
            .unwrap_or_default(),
    };
    for field in schema.fields() {
        check_array(field.data_type(), &mut layout)?;
    }
    if !layout.nodes.is_empty() || !layout.buffers.is_empty() || !layout.variadic.is_empty() {
        return Err(malformed(format!(
            "{} field nodes, {} buffers and {} variadic counts more than the schema's arrays use",
            layout.nodes.len(),
            layout.buffers.len(),
            layout.variadic.len()
        )));
    }
    Ok(())
}

fn check_array(
    data_type: &arrow::datatypes::DataType,
    l: &mut Layout,
) -> Result<(), UntrustedIpcError> {
    use arrow::datatypes::{DataType, UnionMode};
    let (len, nulls) = l.node()?;
    let times = |n: u64| len.saturating_mul(n);
    let offsets = |n: u64| {
        if len == 0 {
            0
        } else {
            (len + 1).saturating_mul(n)
        }
    };
    match data_type {
        DataType::Null => {}
        DataType::Boolean => {
            l.validity(len, nulls)?;
            l.buffer(len.div_ceil(8), "values")?;
        }
        DataType::FixedSizeBinary(width) => {
            l.validity(len, nulls)?;
            l.typed(times(*width as u64), (*width as u64).max(1), "values")?;
        }
        DataType::Utf8 | DataType::Binary => {
            l.validity(len, nulls)?;
            l.typed(offsets(4), 4, "offsets")?;
            l.buffer(0, "data")?;
        }
        DataType::LargeUtf8 | DataType::LargeBinary => {
            l.validity(len, nulls)?;
            l.typed(offsets(8), 8, "offsets")?;
            l.buffer(0, "data")?;
        }
        DataType::Utf8View | DataType::BinaryView => {
            l.validity(len, nulls)?;
            l.typed(times(16), 16, "views")?;
            if l.variadic.is_empty() {
                return Err(malformed("a view array without its variadic buffer count"));
            }
            for _ in 0..l.variadic.remove(0).max(0) {
                l.buffer(0, "data")?;
            }
        }
        DataType::List(child) | DataType::Map(child, _) => {
            l.validity(len, nulls)?;
            l.typed(offsets(4), 4, "offsets")?;
            check_array(child.data_type(), l)?;
        }
        DataType::LargeList(child) => {
            l.validity(len, nulls)?;
            l.typed(offsets(8), 8, "offsets")?;
            check_array(child.data_type(), l)?;
        }
        DataType::ListView(child) => {
            l.validity(len, nulls)?;
            l.typed(times(4), 4, "offsets")?;
            l.typed(times(4), 4, "sizes")?;
            check_array(child.data_type(), l)?;
        }
        DataType::LargeListView(child) => {
            l.validity(len, nulls)?;
            l.typed(times(8), 8, "offsets")?;
            l.typed(times(8), 8, "sizes")?;
            check_array(child.data_type(), l)?;
        }
        DataType::FixedSizeList(child, _) => {
            l.validity(len, nulls)?;
            check_array(child.data_type(), l)?;
        }
        DataType::Struct(fields) => {
            l.validity(len, nulls)?;
            for f in fields {
                check_array(f.data_type(), l)?;
            }
        }
        DataType::Union(fields, mode) => {
            l.buffer(len, "type ids")?;
            if *mode == UnionMode::Dense {
                l.typed(times(4), 4, "offsets")?;
            }
            for (_, f) in fields.iter() {
                check_array(f.data_type(), l)?;
            }
        }
        DataType::RunEndEncoded(ends, values) => {
            check_array(ends.data_type(), l)?;
            check_array(values.data_type(), l)?;
        }
        other => match other.primitive_width() {
            Some(width) => {
                l.validity(len, nulls)?;
                l.typed(times(width as u64), width as u64, "values")?;
            }
            None => {
                return Err(malformed(format!(
                    "the type {other}, which peers may not send"
                )));
            }
        },
    }
    Ok(())
}

fn check_batch(
    batch: arrow::ipc::RecordBatch<'_>,
    body: usize,
    limits: &IpcLimits,
) -> Result<(), UntrustedIpcError> {
    if batch.compression().is_some() {
        return Err(UntrustedIpcError::Compressed);
    }
    over("rows of a batch", batch.length(), limits.max_rows)?;
    if let Some(nodes) = batch.nodes() {
        for node in nodes.iter() {
            over("elements of an array", node.length(), limits.max_elements)?;
            if node.null_count() < 0 || node.null_count() > node.length() {
                return Err(malformed(format!(
                    "an array of {} elements declares {} nulls",
                    node.length(),
                    node.null_count()
                )));
            }
        }
    }
    let buffers = batch.buffers().map_or(0, |b| b.len());
    if let Some(list) = batch.buffers() {
        for b in list.iter() {
            let (offset, length) = (b.offset(), b.length());
            let fits = offset >= 0
                && offset % 8 == 0
                && length >= 0
                && (offset as u64)
                    .checked_add(length as u64)
                    .is_some_and(|end| end <= body as u64);
            if !fits {
                return Err(malformed(format!(
                    "a buffer at {offset} of {length} bytes is not 8-byte aligned inside its \
                     body of {body} bytes"
                )));
            }
        }
    }
    if let Some(counts) = batch.variadicBufferCounts() {
        let mut total = 0i64;
        for c in counts.iter() {
            if c < 0 {
                return Err(malformed("a negative variadic buffer count"));
            }
            total = total.saturating_add(c);
        }
        if total as u64 > buffers as u64 {
            return Err(malformed(format!(
                "{total} variadic buffers declared, {buffers} buffers present"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn sample() -> (RecordBatch, Vec<u8>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), Some("yy"), None]));
        let batch = RecordBatch::try_new(schema, vec![a, s]).unwrap();
        let mut out = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        (batch, out)
    }

    #[test]
    fn a_well_formed_stream_decodes() {
        let (batch, bytes) = sample();
        let (_, decoded) = decode(bytes, &IpcLimits::default()).unwrap();
        assert_eq!(decoded.unwrap(), batch);
    }

    #[test]
    fn compressed_bodies_are_refused_before_anything_is_allocated() {
        let (batch, _) = sample();
        let mut out = Vec::new();
        let options = arrow::ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME))
            .unwrap();
        let mut w = arrow::ipc::writer::StreamWriter::try_new_with_options(
            &mut out,
            &batch.schema(),
            options,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        assert_eq!(
            decode(out, &IpcLimits::default()).unwrap_err(),
            UntrustedIpcError::Compressed
        );
    }

    #[test]
    fn declared_sizes_are_held_to_the_bytes_and_the_limits() {
        let (_, bytes) = sample();
        let tight = IpcLimits {
            max_rows: 2,
            ..Default::default()
        };
        assert!(matches!(
            decode(bytes.clone(), &tight),
            Err(UntrustedIpcError::Limit {
                what: "rows of a batch",
                ..
            })
        ));
        let tiny = IpcLimits {
            max_bytes: 8,
            ..Default::default()
        };
        assert!(matches!(
            decode(bytes.clone(), &tiny),
            Err(UntrustedIpcError::Limit { .. })
        ));
        // Truncated anywhere: an error, never a panic.
        for cut in 0..bytes.len() {
            let _ = decode(bytes[..cut].to_vec(), &IpcLimits::default());
        }
    }

    /// A batch of nested and variable-width types.
    fn nested() -> Vec<u8> {
        use arrow::array::{
            BooleanArray, LargeBinaryArray, ListArray, StringViewArray, StructArray,
        };
        use arrow::datatypes::Int32Type;
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
        ]));
        let flags: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)]));
        let views: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("a string longer than twelve bytes"),
            None,
            Some("short"),
        ]));
        let blobs: ArrayRef = Arc::new(LargeBinaryArray::from_opt_vec(vec![
            Some(b"x".as_slice()),
            None,
            Some(b"yz".as_slice()),
        ]));
        let record: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("f", DataType::Boolean, true)),
                flags.clone(),
            ),
            (
                Arc::new(Field::new("v", DataType::Utf8View, true)),
                views.clone(),
            ),
        ]));
        let batch = RecordBatch::try_from_iter(vec![
            ("l", list),
            ("b", flags),
            ("v", views),
            ("lb", blobs),
            ("s", record),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        assert!(decode(out.clone(), &IpcLimits::default()).is_ok());
        out
    }

    /// Deterministic mutation fuzzing: every byte position overwritten with values that
    /// matter to lengths and offsets, and random multi-byte damage. No input may panic
    /// (the catch-all would say "the decoder refused the stream").
    #[test]
    fn damaged_streams_are_refused_without_panicking() {
        for bytes in [sample().1, nested()] {
            mutate_and_decode(bytes);
        }
    }

    fn mutate_and_decode(bytes: Vec<u8>) {
        let limits = IpcLimits::default();
        let mut refused_by_decoder = 0;
        let mut check = |input: Vec<u8>| {
            if let Err(UntrustedIpcError::Malformed(m)) = decode(input, &limits)
                && m == "the decoder refused the stream"
            {
                refused_by_decoder += 1;
            }
        };
        for i in 0..bytes.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut m = bytes.clone();
                m[i] = v;
                check(m);
            }
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..20_000 {
            let mut m = bytes.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() % m.len() as u64) as usize;
                m[at] = next() as u8;
            }
            check(m);
        }
        assert_eq!(refused_by_decoder, 0, "the decoder panicked on some input");
    }
}
