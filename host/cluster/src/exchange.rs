//! The data exchange between TaskManagers: every channel whose ends run on different
//! TaskManagers is one Arrow Flight `DoPut` stream, producer's side to consumer's.
//!
//! The stream opens with a frame whose descriptor names the channel (job, attempt,
//! edge, producer, consumer); the messages follow in order ([`crate::codec`]). The
//! receiving end hands them to the consumer's bounded channel and reads no further
//! while it is full, so HTTP/2 flow control (a stream window of [`STREAM_WINDOW`])
//! stops the producer: backpressure per channel, memory bounded on both sides. A stream
//! that breaks, or ends without its end-of-stream message, fails the attempt on both
//! sides; a stream for an attempt other than the one running here is refused.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use fungi_common::{FungiError, Message};
use fungi_execution::executor::{ChannelId, Exchange};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::codec::{Decoder, Encoder};

/// The HTTP/2 window of one channel's stream: what may be in flight on it beyond the
/// consumer's bounded channel.
pub(crate) const STREAM_WINDOW: u32 = 1 << 20;
/// The HTTP/2 window of one connection between two TaskManagers (all its channels). Far
/// larger than a stream's: data a stalled channel holds counts against the connection
/// too, so a window of a few streams would let a few slow consumers starve every other
/// channel on the connection. Memory stays bounded by the stream windows (one per
/// channel); this only keeps the connection from binding first.
pub(crate) const CONNECTION_WINDOW: u32 = 1 << 30;
/// The largest HTTP/2 DATA frame a producer may send to this TaskManager: a batch of
/// up to this size crosses as one frame instead of HTTP/2's default 16 KiB pieces
/// (fewer frame headers, flow-control updates and wake-ups per batch). It stays under
/// the stream window, so a frame never waits for a window that cannot open.
pub(crate) const MAX_FRAME: u32 = 256 << 10;
/// How long a stream waits for the consumer's side of its attempt to be deployed.
const DEPLOY_WAIT: Duration = Duration::from_secs(30);

/// Names a channel of one attempt of one job; the first frame of its stream carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct ChannelKey {
    job: String,
    attempt: u64,
    edge: u32,
    producer: u32,
    consumer: u32,
}

impl ChannelKey {
    fn channel(&self) -> ChannelId {
        ChannelId {
            edge: self.edge,
            producer: self.producer,
            consumer: self.consumer,
        }
    }
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "channel {}.{}->{} of job {} attempt {}",
            self.edge, self.producer, self.consumer, self.job, self.attempt
        )
    }
}

/// One attempt's part on this TaskManager, as the exchange sees it.
#[derive(Debug)]
pub(crate) struct AttemptLink {
    pub(crate) attempt: u64,
    /// Consumer ends waiting for their producer's stream.
    pending: Mutex<HashMap<ChannelId, mpsc::Sender<Message>>>,
    /// Cancelled when a channel of the attempt broke.
    pub(crate) failure: CancellationToken,
    reason: Mutex<Option<String>>,
    /// Arrow bytes received and sent over the network by this part.
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Nanoseconds remote channels' data waited for a full consumer channel here.
    pub(crate) backpressured_ns: AtomicU64,
}

impl AttemptLink {
    pub(crate) fn new(attempt: u64) -> AttemptLink {
        AttemptLink {
            attempt,
            pending: Mutex::default(),
            failure: CancellationToken::new(),
            reason: Mutex::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
        }
    }

    /// Fails the attempt's part here with `reason` (the first reason wins).
    pub(crate) fn fail(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            warn!(attempt = self.attempt, %reason, "data exchange failed");
            *slot = Some(reason);
        }
        self.failure.cancel();
    }

    /// The consumer end of `channel`, taken by its producer's stream once the attempt
    /// is published.
    pub(crate) fn register(&self, channel: ChannelId, capacity: usize) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel(capacity);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel, tx);
        rx
    }

    /// Why the attempt's exchange failed, if it did.
    pub(crate) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The consumer ends of the remote channels of every attempt running here.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Per job, its attempt running here.
    attempts: Mutex<HashMap<String, Arc<AttemptLink>>>,
    changed: Notify,
}

impl Inbox {
    /// Makes `link`'s attempt of `job` the one this TaskManager runs, once every
    /// consumer end of it is in place; streams of older attempts are refused from now on.
    pub(crate) fn publish(&self, job: &str, link: Arc<AttemptLink>) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.to_string(), link);
        self.changed.notify_waiters();
    }

    /// Forgets `attempt` of `job`, if it is still the current one.
    pub(crate) fn end(&self, job: &str, attempt: u64) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if attempts.get(job).is_some_and(|l| l.attempt == attempt) {
            attempts.remove(job);
        }
    }

    /// The consumer end `key` names, once its attempt is deployed here.
    async fn take(
        &self,
        key: &ChannelKey,
    ) -> Result<(Arc<AttemptLink>, mpsc::Sender<Message>), Status> {
        let deadline = tokio::time::Instant::now() + DEPLOY_WAIT;
        loop {
            let notified = self.changed.notified();
            {
                let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
                match attempts.get(&key.job) {
                    Some(link) if link.attempt == key.attempt => {
                        let sender = link
                            .pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key.channel());
                        return match sender {
                            Some(s) => Ok((link.clone(), s)),
                            None => Err(Status::failed_precondition(format!(
                                "{key}: no such channel ends here, or it is already connected"
                            ))),
                        };
                    }
                    Some(link) if link.attempt > key.attempt => {
                        return Err(Status::failed_precondition(format!(
                            "{key} is stale: attempt {} runs here now",
                            link.attempt
                        )));
                    }
                    _ => {}
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Status::not_found(format!(
                    "{key}: that attempt is not deployed on this TaskManager"
                )));
            }
        }
    }
}

/// This TaskManager's Arrow Flight endpoint: takes the streams of remote channels.
#[derive(Debug, Clone)]
pub(crate) struct DataService {
    pub(crate) inbox: Arc<Inbox>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Reads one channel's stream into its consumer's channel. Returns once the end of
/// stream is delivered, or the consumer is gone; an error when the stream broke.
async fn deliver(
    mut stream: Streaming<FlightData>,
    link: &AttemptLink,
    consumer: mpsc::Sender<Message>,
) -> Result<(), String> {
    let mut decoder = Decoder::default();
    loop {
        let data = match stream.message().await {
            Ok(Some(data)) => data,
            Ok(None) => return Err("the stream ended before its end-of-stream message".into()),
            Err(status) => return Err(format!("the stream broke: {}", status.message())),
        };
        link.bytes_in.fetch_add(
            (data.data_body.len() + data.data_header.len()) as u64,
            Ordering::Relaxed,
        );
        let Some(message) = decoder.decode(data).map_err(|e| e.to_string())? else {
            continue;
        };
        let end = matches!(message, Message::EndOfStream);
        let delivered = match consumer.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(message)) => {
                // The consumer is behind: this stream waits (and HTTP/2 holds back its
                // producer); the wait is backpressure across hosts.
                let waiting = std::time::Instant::now();
                let sent = consumer.send(message).await.is_ok();
                link.backpressured_ns
                    .fetch_add(waiting.elapsed().as_nanos() as u64, Ordering::Relaxed);
                sent
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !delivered || end {
            // A consumer that is gone ended (or failed) on its own.
            return Ok(());
        }
    }
}

#[tonic::async_trait]
impl FlightService for DataService {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;
    type DoExchangeStream = BoxStream<FlightData>;

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty stream"))?;
        let key: ChannelKey = first
            .flight_descriptor
            .as_ref()
            .and_then(|d| serde_json::from_slice(&d.cmd).ok())
            .ok_or_else(|| {
                Status::invalid_argument("the first frame does not name a Fungi channel")
            })?;
        let (link, consumer) = self.inbox.take(&key).await?;
        debug!(%key, "channel connected");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result = deliver(stream, &link, consumer).await;
            if let Err(reason) = &result {
                link.fail(format!("{key}: {reason}"));
            }
            let _ = done_tx.send(result);
        });
        let done = futures::stream::once(async move {
            match done_rx.await {
                Ok(Ok(())) => Ok(PutResult::default()),
                Ok(Err(reason)) => Err(Status::aborted(reason)),
                Err(_) => Err(Status::internal("the channel's reader ended")),
            }
        });
        Ok(Response::new(Box::pin(done)))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented(
            "Fungi's data endpoint takes DoPut only",
        ))
    }
}

/// Connections to other TaskManagers' data endpoints, one per address (HTTP/2
/// multiplexes every channel to that TaskManager on it).
#[derive(Debug, Default)]
pub(crate) struct Connections {
    tls: Option<crate::Tls>,
    by_address: Mutex<HashMap<String, Channel>>,
}

impl Connections {
    /// Connections over mutual TLS when `tls` is given.
    pub(crate) fn new(tls: Option<crate::Tls>) -> Connections {
        Connections {
            tls,
            by_address: Mutex::default(),
        }
    }

    fn get(&self, address: &str) -> Result<Channel, FungiError> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = by_address.get(address) {
            return Ok(c.clone());
        }
        let channel = crate::tls::endpoint(address, self.tls.as_ref())
            .map_err(|e| FungiError::Config(format!("TaskManager {address}: {e}")))?
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .connect_lazy();
        by_address.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}

/// One attempt's part of a job on this TaskManager: which subtasks run here, and Flight
/// streams for the channels to and from the others.
pub(crate) struct FlightExchange {
    pub(crate) job: String,
    pub(crate) link: Arc<AttemptLink>,
    /// `(chain, subtask)` that run here.
    pub(crate) local: HashSet<(usize, u32)>,
    /// The data address of every `(chain, subtask)`.
    pub(crate) addresses: HashMap<(usize, u32), String>,
    /// For every edge, the chain that consumes it.
    pub(crate) consumer_chain: Vec<usize>,
    pub(crate) connections: Arc<Connections>,
}

impl Exchange for FlightExchange {
    fn is_local(&self, chain: usize, subtask: u32) -> bool {
        self.local.contains(&(chain, subtask))
    }

    fn sender(
        &self,
        channel: ChannelId,
        capacity: usize,
    ) -> fungi_common::Result<mpsc::Sender<Message>> {
        let chain = self.consumer_chain[channel.edge as usize];
        let address = self
            .addresses
            .get(&(chain, channel.consumer))
            .ok_or_else(|| {
                FungiError::Internal(format!(
                    "subtask {chain}[{}] has no place",
                    channel.consumer
                ))
            })?;
        let connection = self.connections.get(address)?;
        let key = ChannelKey {
            job: self.job.clone(),
            attempt: self.link.attempt,
            edge: channel.edge,
            producer: channel.producer,
            consumer: channel.consumer,
        };
        let (tx, rx) = mpsc::channel(capacity);
        let link = self.link.clone();
        let address = address.clone();
        tokio::spawn(async move {
            if let Err(reason) = send(connection, &key, rx, &link).await {
                link.fail(format!("{key} to {address}: {reason}"));
            }
        });
        Ok(tx)
    }

    fn receiver(
        &self,
        channel: ChannelId,
        capacity: usize,
    ) -> fungi_common::Result<mpsc::Receiver<Message>> {
        Ok(self.link.register(channel, capacity))
    }
}

/// Streams a channel's messages to the consumer's TaskManager.
async fn send(
    connection: Channel,
    key: &ChannelKey,
    messages: mpsc::Receiver<Message>,
    link: &Arc<AttemptLink>,
) -> Result<(), String> {
    let opening = FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(
            serde_json::to_vec(key).expect("a channel key serialises"),
        )),
        ..Default::default()
    };
    let counted = link.clone();
    let frames = futures::stream::unfold(
        (messages, Encoder::default()),
        |(mut messages, mut encoder)| async move {
            let message = messages.recv().await?;
            let mut frames = Vec::new();
            if let Err(e) = encoder.encode(message, &mut frames) {
                warn!(error = %e, "cannot encode a batch for the network");
                return None;
            }
            Some((futures::stream::iter(frames), (messages, encoder)))
        },
    )
    .flatten()
    .inspect(move |f| {
        counted.bytes_out.fetch_add(
            (f.data_body.len() + f.data_header.len()) as u64,
            Ordering::Relaxed,
        );
    });
    let frames = futures::stream::once(async { opening }).chain(frames);
    let mut client = FlightServiceClient::new(connection)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let mut response = client
        .do_put(frames)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    while let Some(result) = response.next().await {
        result.map_err(|s| s.message().to_string())?;
    }
    Ok(())
}
