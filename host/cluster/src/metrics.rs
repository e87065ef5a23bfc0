//! The JobManager's Prometheus exposition: per TaskManager its slots and heartbeat, per
//! running job and TaskManager the bytes that crossed hosts, the time spent
//! backpressured, and the rows in and out of each operator (from the heartbeats).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::proto::ClusterStatus;

type Labels = Vec<(&'static str, String)>;

fn family<M>(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, M>
where
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f = Family::<Labels, M>::default();
    registry.register(name, help, f.clone());
    f
}

/// The OpenMetrics text of `status`.
pub(crate) fn render(status: &ClusterStatus) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("fungi_cluster");
    let slots: Family<Labels, Gauge> =
        family(&mut r, "task_manager_slots", "Slots a TaskManager offers");
    let used: Family<Labels, Gauge> = family(&mut r, "task_manager_slots_used", "Slots in use");
    let heartbeat: Family<Labels, Gauge<f64, AtomicU64>> = family(
        &mut r,
        "task_manager_heartbeat_age_seconds",
        "Time since a TaskManager's last heartbeat",
    );
    let attempt: Family<Labels, Gauge> = family(&mut r, "job_attempt", "A job's running attempt");
    let sent: Family<Labels, Counter> = family(
        &mut r,
        "exchange_sent_bytes",
        "Arrow bytes a job's part sent to other TaskManagers",
    );
    let received: Family<Labels, Counter> = family(
        &mut r,
        "exchange_received_bytes",
        "Arrow bytes a job's part received from other TaskManagers",
    );
    let backpressured: Family<Labels, Counter<f64, AtomicU64>> = family(
        &mut r,
        "exchange_backpressured_seconds",
        "Time data from other TaskManagers waited for a full consumer channel",
    );
    let records_in: Family<Labels, Counter> =
        family(&mut r, "operator_records_in", "Rows an operator received");
    let records_out: Family<Labels, Counter> =
        family(&mut r, "operator_records_out", "Rows an operator emitted");
    for t in &status.task_managers {
        let labels = vec![("task_manager", t.id.clone())];
        slots.get_or_create(&labels).set(i64::from(t.slots));
        used.get_or_create(&labels).set(i64::from(t.used));
        heartbeat
            .get_or_create(&labels)
            .set(t.since_heartbeat_ms as f64 / 1000.0);
    }
    for j in &status.jobs {
        attempt
            .get_or_create(&vec![("job", j.job.clone())])
            .set(j.attempt as i64);
        for p in &j.parts {
            let labels = vec![
                ("job", j.job.clone()),
                ("task_manager", p.task_manager.clone()),
            ];
            sent.get_or_create(&labels).inc_by(p.bytes_sent);
            received.get_or_create(&labels).inc_by(p.bytes_received);
            backpressured
                .get_or_create(&labels)
                .inc_by(p.backpressured_ms as f64 / 1000.0);
            for o in &p.operators {
                let mut labels = labels.clone();
                labels.push(("operator", o.operator.clone()));
                records_in.get_or_create(&labels).inc_by(o.records_in);
                records_out.get_or_create(&labels).inc_by(o.records_out);
            }
        }
    }
    let mut text = String::new();
    encode(&mut text, &r)?;
    Ok(text)
}
