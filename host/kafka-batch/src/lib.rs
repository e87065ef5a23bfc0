//! Reading a Kafka consumer's messages many at a time.
//!
//! rdkafka's [`BaseConsumer::poll`] hands out one message per call, and each call costs
//! librdkafka three clock reads and a queue lock and rdkafka an event allocation: at a
//! million small messages a second that is a sixth of a source's thread. librdkafka
//! can hand out a whole batch at once (`rd_kafka_consume_batch_queue`), but rdkafka does
//! not wrap it. [`BatchConsumer`] does, over a queue of its own: the partitions it is
//! told about ([`BatchConsumer::route`]) forward their fetched messages into that
//! queue, in order per partition, and [`BatchConsumer::consume`] takes them out many
//! at a time. Everything else the consumer receives (statistics, errors, commit
//! results) stays on the consumer's own queue, which [`BaseConsumer::poll`] serves.
//!
//! This is the only crate of Fungi with `unsafe` code (the workspace forbids it
//! elsewhere): each block says why it is sound.

use std::borrow::Cow;
use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::time::Duration;

use rdkafka::Timestamp;
use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

/// Why a queue could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// librdkafka returned no queue for the topic's partition.
    NoPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A topic name with a NUL byte in it.
    BadTopic(String),
    /// librdkafka could not create the consumer's queue.
    NoQueue,
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::NoPartition { topic, partition } => {
                write!(f, "no queue for partition {partition} of topic '{topic}'")
            }
            QueueError::BadTopic(topic) => write!(f, "topic name {topic:?} holds a NUL byte"),
            QueueError::NoQueue => write!(f, "librdkafka could not create a queue"),
        }
    }
}

impl std::error::Error for QueueError {}

/// A consumer whose routed partitions' messages are read from a queue of its own, many
/// at a time.
pub struct BatchConsumer<C: ConsumerContext + 'static> {
    /// The queue the routed partitions forward their messages to. Destroyed (in
    /// [`Drop`]) before the consumer, as librdkafka requires.
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    consumer: BaseConsumer<C>,
}

// SAFETY: librdkafka's queues are thread-safe (every operation takes the queue's lock),
// and the consumer itself is `Send` and `Sync`; the queue pointer is only dereferenced by
// librdkafka.
unsafe impl<C: ConsumerContext + 'static> Send for BatchConsumer<C> {}
// SAFETY: as above; `consume` and `route` take `&self` and librdkafka serialises them.
unsafe impl<C: ConsumerContext + 'static> Sync for BatchConsumer<C> {}

impl<C: ConsumerContext + 'static> BatchConsumer<C> {
    /// Wraps `consumer`, with a queue of its own for the partitions routed to it.
    pub fn new(consumer: BaseConsumer<C>) -> Result<Self, QueueError> {
        // SAFETY: the client pointer is valid while `consumer` lives; the new queue
        // belongs to that client.
        let queue = unsafe { rdsys::rd_kafka_queue_new(consumer.client().native_ptr()) };
        let queue = NonNull::new(queue).ok_or(QueueError::NoQueue)?;
        Ok(Self { queue, consumer })
    }

    /// The consumer: to assign partitions, commit offsets and serve its events with
    /// [`BaseConsumer::poll`] (which returns no message of a routed partition).
    pub fn consumer(&self) -> &BaseConsumer<C> {
        &self.consumer
    }

    /// Sends the messages of `partition` of `topic` to this consumer's queue. Call it
    /// before the partition is assigned, so that none of its messages reaches the
    /// consumer's own queue; librdkafka keeps the route across fetch starts, and drops
    /// it when the partition is unassigned.
    pub fn route(&self, topic: &str, partition: i32) -> Result<(), QueueError> {
        let name = CString::new(topic).map_err(|_| QueueError::BadTopic(topic.into()))?;
        // SAFETY: the client pointer is valid while `self.consumer` lives, and `name` is a
        // NUL-terminated string that outlives the call.
        let source = unsafe {
            rdsys::rd_kafka_queue_get_partition(
                self.consumer.client().native_ptr(),
                name.as_ptr(),
                partition,
            )
        };
        let source = NonNull::new(source).ok_or_else(|| QueueError::NoPartition {
            topic: topic.into(),
            partition,
        })?;
        // SAFETY: both are live queue handles of this client; librdkafka keeps its own
        // reference to the destination for as long as the route exists.
        unsafe { rdsys::rd_kafka_queue_forward(source.as_ptr(), self.queue.as_ptr()) };
        // SAFETY: `source` is a handle this call owns and no longer uses; destroying it
        // releases the handle, not the partition's queue or its route.
        unsafe { rdsys::rd_kafka_queue_destroy(source.as_ptr()) };
        Ok(())
    }

    /// Up to `max` messages of the routed partitions, waiting up to `timeout` for them
    /// (librdkafka waits for all `max` or the timeout, whichever comes first: a zero
    /// timeout takes what is queued).
    pub fn consume(&self, timeout: Duration, max: usize) -> Messages<'_> {
        let mut raw: Vec<*mut rdsys::rd_kafka_message_t> = Vec::with_capacity(max);
        let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: the queue is live; `raw` has room for `max` pointers and librdkafka
        // writes at most that many.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                raw.as_mut_ptr(),
                max,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // SAFETY: librdkafka initialised the first `n` elements (a negative result, an
        // invalid queue, initialised none).
        unsafe { raw.set_len(n) };
        Messages {
            raw,
            _consumer: PhantomData,
        }
    }
}

impl<C: ConsumerContext + 'static> Drop for BatchConsumer<C> {
    fn drop(&mut self) {
        // SAFETY: the queue handle is owned by `self` and not used after this; it goes
        // before the consumer (a field, dropped after this body), as librdkafka requires
        // of every queue of a client. Messages borrow `self`, so none is left.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Messages taken from a [`BatchConsumer`]; librdkafka's memory, released on drop.
pub struct Messages<'c> {
    raw: Vec<*mut rdsys::rd_kafka_message_t>,
    _consumer: PhantomData<&'c ()>,
}

impl Messages<'_> {
    /// How many.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The messages, in the order librdkafka queued them (per partition, by offset).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Message<'_>> {
        self.raw.iter().map(|&raw| Message {
            // SAFETY: every pointer came from librdkafka and lives until `self` drops,
            // which the returned borrow outlasts.
            raw: unsafe { &*raw },
        })
    }
}

impl Drop for Messages<'_> {
    fn drop(&mut self) {
        for &raw in &self.raw {
            // SAFETY: each message was handed out once by librdkafka and is released
            // once, here, before its consumer (which `'c` keeps alive).
            unsafe { rdsys::rd_kafka_message_destroy(raw) };
        }
    }
}

/// One message, or a partition's error (see [`Message::error`]).
#[derive(Clone, Copy)]
pub struct Message<'m> {
    raw: &'m rdsys::rd_kafka_message_t,
}

impl<'m> Message<'m> {
    /// The partition.
    pub fn partition(&self) -> i32 {
        self.raw.partition
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        self.raw.offset
    }

    /// What went wrong, if this is an error rather than a message: the end of a
    /// partition (`enable.partition.eof`) or a consumption error.
    pub fn error(&self) -> Option<KafkaError> {
        match self.raw.err {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Some(KafkaError::PartitionEOF(self.raw.partition))
            }
            e => Some(KafkaError::MessageConsumption(e.into())),
        }
    }

    /// The value; `None` for a tombstone.
    pub fn payload(&self) -> Option<&'m [u8]> {
        // SAFETY: librdkafka points `payload` at `len` bytes of the message, live for `'m`.
        unsafe { bytes(self.raw.payload, self.raw.len) }
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&'m [u8]> {
        // SAFETY: librdkafka points `key` at `key_len` bytes of the message, live for `'m`.
        unsafe { bytes(self.raw.key, self.raw.key_len) }
    }

    /// The timestamp and its kind.
    pub fn timestamp(&self) -> Timestamp {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live for `'m`; librdkafka only reads it and writes `kind`.
        let millis = unsafe { rdsys::rd_kafka_message_timestamp(self.raw, &mut kind) };
        match kind {
            _ if millis == -1 => Timestamp::NotAvailable,
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => {
                Timestamp::CreateTime(millis)
            }
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                Timestamp::LogAppendTime(millis)
            }
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE => {
                Timestamp::NotAvailable
            }
        }
    }

    /// Calls `each` with every header's name (not necessarily UTF-8: a producer may send
    /// any bytes) and value, in order.
    pub fn for_each_header(&self, mut each: impl FnMut(Cow<'m, str>, Option<&'m [u8]>)) {
        let mut headers: *mut rdsys::rd_kafka_headers_t = ptr::null_mut();
        // SAFETY: the message is live for `'m`; librdkafka parses its headers once and
        // keeps them with the message, writing their handle to `headers`.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.raw, &mut headers) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        // SAFETY: `headers` is the live handle librdkafka just returned.
        let count = unsafe { rdsys::rd_kafka_header_cnt(headers) };
        for i in 0..count {
            let mut name: *const std::ffi::c_char = ptr::null();
            let mut value: *const std::ffi::c_void = ptr::null();
            let mut size = 0;
            // SAFETY: `headers` is live and `i` is below its count; librdkafka writes the
            // three out-parameters, pointing into memory the message owns.
            let got = unsafe {
                rdsys::rd_kafka_header_get_all(headers, i, &mut name, &mut value, &mut size)
            };
            if got != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                continue;
            }
            // SAFETY: librdkafka stores header names NUL-terminated, owned by the message.
            let name = unsafe { CStr::from_ptr(name) };
            // SAFETY: the value is `size` bytes owned by the message (null for none).
            let value = unsafe { bytes(value.cast_mut(), size) };
            each(name.to_string_lossy(), value);
        }
    }
}

/// The `len` bytes at `data`; `None` if `data` is null.
///
/// # Safety
///
/// A non-null `data` points at `len` initialised bytes that stay unchanged for `'m`.
unsafe fn bytes<'m>(data: *mut std::ffi::c_void, len: usize) -> Option<&'m [u8]> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}
