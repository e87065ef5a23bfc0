//! The `http` sink: POSTs rows as JSON lines (`application/x-ndjson`) to a URL, with
//! retries, a circuit breaker and the dead-letter output for what cannot be delivered.
//!
//! ```sql
//! CREATE TABLE alerts (id BIGINT, msg STRING) WITH (
//!   'connector' = 'http', 'url' = 'http://hooks.internal:8080/alerts',
//!   'sink.retry.max-retries' = '8', 'sink.breaker.open-for' = '2 s',
//!   'sink.on-error' = 'dead-letter');
//! ```
//!
//! Each request carries at most `sink.max-batch-rows` rows. A 2xx answer delivers them.
//! Failures of the service (connection errors, timeouts, 408, 429 and 5xx) are retried
//! with exponential backoff and jitter (`sink.retry.*`) and counted by the circuit
//! breaker (`sink.breaker.*`): once open, no request goes out until its open time has
//! passed, then one probe does; waiting on an open breaker spends no retries, so an
//! outage holds the job back (backpressure) instead of losing rows. Other 4xx answers are
//! rejections of the rows themselves and are not retried. A rejected request, or one
//! whose retries are spent, fails the job (`'sink.on-error' = 'fail'`, the default; the
//! restart strategy takes over) or sends its rows to the dead-letter output with the
//! reason (`'dead-letter'`). Delivery is at least once: a batch is delivered before the
//! checkpoint barrier behind it passes.
//!
//! The URL is parsed once ([`crate::egress::parse_http_url`]) and that parsed URL is
//! what every request goes to; a confined tenant's URL must be one of its egress hosts.
//! Redirects are not followed (a 3xx is a rejection) and no proxy is used, so the host
//! that was checked is the only one the sink talks to. At most 4 KiB of an error
//! answer's body are read, for the message.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow::array::RecordBatch;
use fungi_common::{FungiError, Result};
use fungi_execution::metrics::OperatorMetrics;
use fungi_execution::operator::{OperatorContext, OperatorFactory};
use fungi_execution::{Operator, Output};
use fungi_reliability::{BreakerConfig, CircuitBreaker, OnFailure, RetryPolicy};

use crate::format::{RecordFormat, encode_rows};
use crate::options::Options;

/// The options the `http` sink knows.
const KNOWN: &[&str] = &[
    "url",
    "format",
    "sink.timeout",
    "sink.max-batch-rows",
    "sink.on-error",
    "sink.retry.max-retries",
    "sink.retry.initial-delay",
    "sink.retry.max-delay",
    "sink.retry.multiplier",
    "sink.retry.jitter",
    "sink.breaker.failure-threshold",
    "sink.breaker.window",
    "sink.breaker.open-for",
];

/// The settings of an `http` sink.
#[derive(Debug, Clone)]
struct HttpSinkConfig {
    url: reqwest::Url,
    timeout: Duration,
    max_batch_rows: usize,
    on_error: OnFailure,
    retry: RetryPolicy,
    breaker: BreakerConfig,
}

impl HttpSinkConfig {
    fn from_options(options: &Options) -> Result<Self> {
        let text = options.require("url")?;
        let what = "connector 'http', option 'url':";
        let url = match options.egress() {
            Some(egress) => egress.check_url(what, text)?,
            None => crate::egress::parse_http_url(what, text)?,
        };
        if let Some(f) = options.get("format")
            && !f.eq_ignore_ascii_case("json")
        {
            return Err(FungiError::Config(format!(
                "connector 'http', option 'format': '{f}'; the http sink writes json"
            )));
        }
        let retry_default = RetryPolicy::default();
        let breaker_default = BreakerConfig::default();
        let on_error = options.on_error("sink.on-error")?;
        let multiplier = match options.get("sink.retry.multiplier") {
            None => retry_default.multiplier,
            Some(v) => v.trim().parse::<f32>().ok().filter(|m| *m >= 1.0).ok_or_else(|| {
                FungiError::Config(format!(
                    "connector 'http', option 'sink.retry.multiplier': '{v}' is not a number ≥ 1"
                ))
            })?,
        };
        let config = HttpSinkConfig {
            url,
            timeout: options
                .get_duration("sink.timeout")?
                .unwrap_or(Duration::from_secs(10)),
            max_batch_rows: options
                .get_u64("sink.max-batch-rows")?
                .unwrap_or(500)
                .max(1) as usize,
            on_error,
            retry: RetryPolicy {
                max_retries: options
                    .get_u64("sink.retry.max-retries")?
                    .map_or(retry_default.max_retries, |n| n as usize),
                initial_delay: options
                    .get_duration("sink.retry.initial-delay")?
                    .unwrap_or(retry_default.initial_delay),
                max_delay: options
                    .get_duration("sink.retry.max-delay")?
                    .unwrap_or(retry_default.max_delay),
                multiplier,
                jitter: options
                    .get_bool("sink.retry.jitter")?
                    .unwrap_or(retry_default.jitter),
            },
            breaker: BreakerConfig {
                failure_threshold: options
                    .get_u64("sink.breaker.failure-threshold")?
                    .map_or(breaker_default.failure_threshold, |n| n.max(1) as u32),
                window: options
                    .get_duration("sink.breaker.window")?
                    .unwrap_or(breaker_default.window),
                open_for: options
                    .get_duration("sink.breaker.open-for")?
                    .unwrap_or(breaker_default.open_for),
            },
        };
        options.check_all_used(KNOWN)?;
        Ok(config)
    }
}

/// One request's outcome when it did not deliver.
#[derive(Debug)]
enum Failure {
    /// The service failed (worth retrying).
    Unavailable(String),
    /// The service refused the rows (not worth retrying).
    Rejected(String),
}

/// The `http` sink (one per subtask; the circuit breaker is shared by the subtasks).
pub struct HttpSink {
    config: HttpSinkConfig,
    breaker: Arc<CircuitBreaker>,
    client: Option<reqwest::blocking::Client>,
    ctx: Option<OperatorContext>,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// A factory of `http` sinks from the table's options.
    pub fn factory(options: &Options) -> Result<OperatorFactory> {
        let config = HttpSinkConfig::from_options(options)?;
        let breaker = Arc::new(CircuitBreaker::new(config.breaker.clone()));
        Ok(Arc::new(move |_| {
            Ok(Box::new(HttpSink {
                config: config.clone(),
                breaker: breaker.clone(),
                client: None,
                ctx: None,
            }) as Box<dyn Operator>)
        }))
    }

    fn metrics(&self) -> &OperatorMetrics {
        &self.ctx.as_ref().expect("opened").metrics
    }

    fn publish_circuit(&self) {
        let m = self.metrics();
        m.circuit
            .store(self.breaker.state().code(), Ordering::Relaxed);
        m.circuit_opened
            .store(self.breaker.times_opened(), Ordering::Relaxed);
    }

    /// One POST of `body`.
    fn post(&self, body: &[u8]) -> std::result::Result<(), Failure> {
        let client = self.client.as_ref().expect("opened");
        let response = client
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body.to_vec())
            .send()
            .map_err(|e| Failure::Unavailable(format!("{e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut head = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(response, 4096), &mut head);
        let text = String::from_utf8_lossy(&head)
            .chars()
            .take(200)
            .collect::<String>();
        let reason = if status.is_redirection() {
            format!("HTTP {status}: redirects are not followed")
        } else {
            format!("HTTP {status}: {}", text.trim())
        };
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(Failure::Unavailable(reason))
        } else {
            Err(Failure::Rejected(reason))
        }
    }

    /// Delivers `body` (the rows `rows`), retrying through outages; what cannot be
    /// delivered goes where the policy says.
    fn deliver(&self, body: &[u8], rows: &[&[u8]]) -> Result<()> {
        let mut delays = self.config.retry.delays();
        let mut attempts = 0;
        loop {
            if let Err(wait) = self.breaker.allow() {
                self.publish_circuit();
                std::thread::sleep(wait);
                continue;
            }
            attempts += 1;
            let outcome = self.post(body);
            match &outcome {
                Ok(()) => self.breaker.success(),
                Err(Failure::Unavailable(_)) => self.breaker.failure(),
                Err(Failure::Rejected(_)) => {}
            }
            self.publish_circuit();
            let (reason, message) = match outcome {
                Ok(()) => return Ok(()),
                Err(Failure::Rejected(why)) => ("sink rejected", why),
                Err(Failure::Unavailable(why)) => match delays.next() {
                    Some(wait) => {
                        self.metrics().retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.config.url, attempt = attempts, error = %why,
                            "http sink: retrying in {wait:?}");
                        std::thread::sleep(wait);
                        continue;
                    }
                    None => (
                        "sink unavailable",
                        format!("{why} (after {attempts} attempts)"),
                    ),
                },
            };
            let ctx = self.ctx.as_ref().expect("opened");
            return match self.config.on_error {
                OnFailure::Fail => Err(FungiError::Connector(format!(
                    "http sink {}: {message}",
                    self.config.url
                ))),
                OnFailure::DeadLetter => {
                    for row in rows {
                        ctx.dead_letters.push(
                            &ctx.operator,
                            reason,
                            message.clone(),
                            self.config.url.to_string(),
                            row,
                        );
                    }
                    ctx.metrics
                        .records_side
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    Ok(())
                }
            };
        }
    }
}

impl Operator for HttpSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let timeout = self.config.timeout;
        let client = fungi_reliability::outside_async_runtime(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
        })
        .map_err(|e| FungiError::Connector(format!("http sink: cannot create a client: {e}")))?;
        self.client = Some(client);
        self.ctx = Some(ctx.clone());
        self.publish_circuit();
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let mut start = 0;
        while start < batch.num_rows() {
            let len = self.config.max_batch_rows.min(batch.num_rows() - start);
            let encoded = encode_rows(&batch.slice(start, len), RecordFormat::Json)?;
            // One JSON object per line.
            let mut rows = Vec::with_capacity(encoded.len());
            let mut body = Vec::with_capacity(encoded.total_bytes() + 1);
            for row in encoded.iter() {
                let row = row.trim_ascii();
                body.extend_from_slice(row);
                body.push(b'\n');
                rows.push(row);
            }
            let this = &*self;
            fungi_reliability::outside_async_runtime(|| this.deliver(&body, &rows))?;
            start += len;
        }
        Ok(())
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        // The blocking client owns a runtime, which may not be dropped on an async thread.
        if let Some(client) = self.client.take() {
            fungi_reliability::outside_async_runtime(move || drop(client));
        }
    }
}
