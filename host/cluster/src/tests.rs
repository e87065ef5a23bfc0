//! The protocol's refusals, with a real JobManager, TaskManager and data endpoint on
//! loopback in this process.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{FlightData, FlightDescriptor};
use fungi_common::Message;
use fungi_execution::executor::ChannelId;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::CollectSink;
use fungi_execution::plan::PhysicalPlan;
use fungi_execution::source::VecSource;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::codec::Encoder;
use crate::exchange::{AttemptLink, DataService, Inbox};
use crate::jobmanager::JobManagerConfig;
use crate::proto::from_task_manager::Kind as Up;
use crate::proto::job_manager_client::JobManagerClient;
use crate::proto::{FromTaskManager, Register};
use crate::taskmanager::TaskManagerConfig;
use crate::{ClusterClient, JobSpec, Planner};

/// Numbers through a rebalance into a collecting sink, at a parallelism of its own.
struct Numbers(u32);

impl Planner for Numbers {
    fn plan(&self, _: &JobSpec) -> Result<PhysicalPlan, String> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let mut graph = JobGraph::new("numbers");
        let source = graph.add_source(
            "numbers",
            self.0,
            VecSource::factory(schema, vec![batch]),
            None,
        );
        let (sink, _) = CollectSink::new();
        let out = graph.add_operator("collect", self.0, sink.factory());
        graph.connect(source, out, Partitioning::Rebalance);
        PhysicalPlan::new(graph).map_err(|e| e.to_string())
    }
}

fn spec() -> JobSpec {
    JobSpec {
        file_name: "numbers.sql".into(),
        text: String::new(),
        parallelism: None,
        statement: 0,
        savepoint: None,
        ..Default::default()
    }
}

async fn job_manager(planner: Arc<dyn Planner>, shutdown: &CancellationToken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(crate::jobmanager::serve(
        listener,
        None,
        planner,
        JobManagerConfig::default(),
        shutdown.clone(),
    ));
    address
}

#[tokio::test]
async fn a_task_manager_of_another_version_is_refused_by_name() {
    let shutdown = CancellationToken::new();
    let address = job_manager(Arc::new(Numbers(1)), &shutdown).await;
    let mut client = JobManagerClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let register = FromTaskManager {
        kind: Some(Up::Register(Register {
            id: "old".into(),
            version: "0.0.1".into(),
            data_address: "127.0.0.1:1".into(),
            slots: 1,
        })),
    };
    let refused = client
        .session(futures::stream::iter([register]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("TaskManager old runs Fungi 0.0.1")
            && refused.message().contains(crate::VERSION),
        "{}",
        refused.message()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_task_manager_whose_plan_differs_refuses_the_job() {
    let shutdown = CancellationToken::new();
    let address = job_manager(Arc::new(Numbers(2)), &shutdown).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = TaskManagerConfig {
        id: Some("odd".into()),
        job_manager: address.clone(),
        slots: 2,
        advertise: None,
        artifact_dir: std::env::temp_dir().join("fungi-artifacts"),
        tls: None,
    };
    // It plans the same job at another parallelism.
    tokio::spawn(crate::taskmanager::run(
        config,
        listener,
        Arc::new(Numbers(1)),
        Default::default(),
        shutdown.clone(),
    ));
    let mut client = ClusterClient::connect(&address, None).await.unwrap();
    for _ in 0..100 {
        if !client.status().await.unwrap().task_managers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = client.submit(&spec(), Vec::new()).await.unwrap();
    let mut last = None;
    while let Some(event) = events.message().await.unwrap() {
        last = Some(event);
    }
    let last = last.unwrap();
    assert_eq!(last.status, "failed");
    assert!(
        last.message
            .contains("the job plans differently on TaskManager odd"),
        "{}",
        last.message
    );
    shutdown.cancel();
}

/// A data endpoint on loopback with `inbox`, and a client of it.
async fn data_endpoint(inbox: Arc<Inbox>) -> FlightServiceClient<tonic::transport::Channel> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlightServiceServer::new(DataService { inbox }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightServiceClient::new(channel)
}

fn opening(attempt: u64) -> FlightData {
    let key = serde_json::json!({
        "job": "j", "attempt": attempt, "edge": 0, "producer": 0, "consumer": 0,
    });
    FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(key.to_string())),
        ..Default::default()
    }
}

#[tokio::test]
async fn streams_of_a_stale_attempt_are_refused() {
    let inbox = Arc::new(Inbox::default());
    inbox.publish("j", Arc::new(AttemptLink::new(2)));
    let mut client = data_endpoint(inbox).await;
    let refused = client
        .do_put(futures::stream::iter([opening(1)]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("attempt 1 is stale: attempt 2 runs here now"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn a_stream_that_ends_without_its_end_of_stream_fails_the_attempt() {
    let inbox = Arc::new(Inbox::default());
    let link = Arc::new(AttemptLink::new(1));
    let channel = ChannelId {
        edge: 0,
        producer: 0,
        consumer: 0,
    };
    let mut consumer = link.register(channel, 4);
    inbox.publish("j", link.clone());
    let mut client = data_endpoint(inbox).await;
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![7]))]).unwrap();
    let mut frames = vec![opening(1)];
    Encoder::default()
        .encode(Message::Batch(batch), &mut frames)
        .unwrap();
    // The producer's process dies here: no end of stream.
    let response = client.do_put(futures::stream::iter(frames)).await;
    let mut response = response.unwrap().into_inner();
    let ended = response.message().await.unwrap_err();
    assert!(
        ended.message().contains("before its end-of-stream"),
        "{ended}"
    );
    assert!(matches!(consumer.recv().await, Some(Message::Batch(b)) if b.num_rows() == 1));
    tokio::time::timeout(Duration::from_secs(5), link.failure.cancelled())
        .await
        .unwrap();
    assert!(link.reason().unwrap().contains("before its end-of-stream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_hold_back_their_own_channels_only_with_bounded_memory() {
    use fungi_execution::executor::Exchange as _;
    const SLOW: u32 = 8;
    let inbox = Arc::new(Inbox::default());
    let consumers = Arc::new(AttemptLink::new(1));
    let channel = |consumer| ChannelId {
        edge: 0,
        producer: 0,
        consumer,
    };
    // Eight consumers never read; the ninth does. All nine channels share one
    // connection to one TaskManager.
    let _slow: Vec<_> = (0..SLOW)
        .map(|c| consumers.register(channel(c), 2))
        .collect();
    let mut fast_rx = consumers.register(channel(SLOW), 2);
    inbox.publish("j", consumers.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .initial_stream_window_size(crate::exchange::STREAM_WINDOW)
            .initial_connection_window_size(crate::exchange::CONNECTION_WINDOW)
            .add_service(FlightServiceServer::new(DataService { inbox }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let producers = Arc::new(AttemptLink::new(1));
    let exchange = crate::exchange::FlightExchange {
        job: "j".into(),
        link: producers.clone(),
        local: [(0, 0)].into(),
        addresses: (0..=SLOW).map(|c| ((1, c), address.clone())).collect(),
        consumer_chain: vec![1],
        connections: Arc::default(),
    };
    let fast_tx = exchange.sender(channel(SLOW), 2).unwrap();
    // 64 KiB batches.
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from((0..8192).collect::<Vec<i64>>()))],
    )
    .unwrap();
    let batch_bytes = 8192 * 8;
    let mut senders = Vec::new();
    for c in 0..SLOW {
        let slow_tx = exchange.sender(channel(c), 2).unwrap();
        let mut accepted = 0u64;
        while accepted < 1000 {
            let send = slow_tx.send(Message::Batch(batch.clone()));
            match tokio::time::timeout(Duration::from_millis(300), send).await {
                Ok(sent) => {
                    sent.unwrap();
                    accepted += 1;
                }
                Err(_) => break,
            }
        }
        eprintln!("a consumer that reads nothing took {accepted} batches of {batch_bytes} bytes");
        // Held back: what left the producer is bounded by the two bounded channels and
        // the stream's HTTP/2 window, not by how much it had to send.
        let in_flight = accepted * batch_bytes;
        let bound = u64::from(crate::exchange::STREAM_WINDOW) + 8 * batch_bytes;
        assert!(
            accepted < 1000 && in_flight <= bound,
            "{accepted} batches ({in_flight} bytes) accepted by a consumer that reads nothing; bound {bound}"
        );
        senders.push(slow_tx);
    }
    // The other channel to the same TaskManager, on the same connection, still flows.
    let reader = tokio::spawn(async move {
        let mut rows = 0;
        while let Some(Message::Batch(b)) = fast_rx.recv().await {
            rows += b.num_rows();
        }
        rows
    });
    for _ in 0..100 {
        tokio::time::timeout(
            Duration::from_secs(10),
            fast_tx.send(Message::Batch(batch.clone())),
        )
        .await
        .expect("the fast channel is not held back by the slow ones")
        .unwrap();
    }
    fast_tx.send(Message::EndOfStream).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .unwrap()
            .unwrap(),
        100 * 8192
    );
    assert!(producers.reason().is_none(), "{:?}", producers.reason());
}
