//! One job: status and actions, its graph with live rates, charts of its recent
//! history, checkpoints, savepoints, exceptions, dead letters, and where it runs.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde_json::{Value, json};

use crate::chart::{Series, line_chart};
use crate::session;
use crate::{api, bytes, clock, graph, poll};

/// The job page (`/jobs/:id`).
#[component]
pub fn Job() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let details = RwSignal::new(None::<Value>);
    let history = RwSignal::new(Value::Null);
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    // Set while a savepoint, stop, cancel or resume is under way.
    let acting = RwSignal::new(false);
    poll(Duration::from_secs(1), move || {
        let id = api::segment(&id());
        Box::pin(async move {
            match api::get::<Value>(&format!("/jobs/{id}")).await {
                Ok(d) => {
                    details.set(Some(d));
                    error.set(None);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            if let Ok(h) = api::get::<Value>(&format!("/jobs/{id}/history")).await {
                history.set(h);
            }
        })
    });
    let status = move || {
        details
            .with(|d| {
                d.as_ref()
                    .and_then(|d| d["status"].as_str().map(str::to_string))
            })
            .unwrap_or_default()
    };
    view! {
        <h1>"Job "<code>{id}</code></h1>
        {move || crate::alert(error.get())}
        {move || notice.get().map(|n| view! { <p class="notice" role="status">{n}</p> })}
        {move || details.get().map(|d| view! { <Summary details=d.clone()/> })}
        <Actions id=Signal::derive(id) status=Signal::derive(status) details notice error busy=acting/>
        <section aria-label="graph">
            <h2>"Graph"</h2>
            {move || details.with(|d| d.as_ref().map(|d| {
                let ops = history.with(|h| h["operators"].as_array().cloned().unwrap_or_default());
                graph::draw(&d["graph"], &ops)
            }))}
            <p class="hint">"Vertices: green under 10 % backpressure, amber under 50 %, red above (averaged over 10 s)."</p>
        </section>
        <section aria-label="metrics" class="charts">{move || history.with(charts)}</section>
        <section aria-label="checkpoints">
            <h2>"Checkpoints"</h2>
            {move || history.with(checkpoint_table)}
        </section>
        {move || details.get().map(|d| view! {
            <Savepoints details=d.clone()/>
            <Exceptions details=d.clone()/>
            <Placement details=d/>
        })}
        <DeadLetters id=Signal::derive(id) status=Signal::derive(status) acting/>
        {move || details.with(|d| d.as_ref().map(|d| view! {
            <section aria-label="script">
                <h2>"Script"</h2>
                <pre>{d["sql"].as_str().unwrap_or_default().to_string()}</pre>
            </section>
        }))}
    }
}

#[component]
fn Summary(details: Value) -> impl IntoView {
    let status = details["status"].as_str().unwrap_or_default().to_string();
    let created = details["created_ms"].as_f64().unwrap_or_default();
    let updated = details["updated_ms"].as_f64().unwrap_or_default();
    let up = if status == "RUNNING" {
        crate::now_ms() - created
    } else {
        updated - created
    };
    let ops = details["operators"].as_array().cloned().unwrap_or_default();
    let read: u64 = ops
        .iter()
        .filter(|o| o["source"].as_bool() == Some(true))
        .filter_map(|o| o["records_out"].as_u64())
        .sum();
    let late: u64 = ops.iter().filter_map(|o| o["late_records"].as_u64()).sum();
    let dead: u64 = details["dead_letters"]
        .as_object()
        .map(|c| c.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    view! {
        <dl class="summary">
            <dt>"Status"</dt><dd><span class=format!("status s-{}", status.to_lowercase()) id="job-status">{status.clone()}</span></dd>
            <dt>"Uptime"</dt><dd>{crate::duration(up)}</dd>
            <dt>"Restarts"</dt><dd>{details["restarts"].as_u64().unwrap_or(0)}</dd>
            <dt>"Slots"</dt><dd>{details["parallelism"].as_u64().unwrap_or(1)}</dd>
            <dt>"Rows read"</dt><dd id="rows-read">{read}</dd>
            <dt>"Late rows"</dt><dd>{late}</dd>
            <dt>"Dead letters"</dt><dd>{dead}</dd>
            <dt>"Tenant"</dt><dd>{details["tenant"].as_str().unwrap_or_default().to_string()}</dd>
            {details["error"].as_str().map(|e| view! { <dt>"Error"</dt><dd class="error">{e.to_string()}</dd> })}
        </dl>
    }
}

/// Savepoint, stop with a savepoint, cancel, resume: each drawn only if the role may.
#[component]
fn Actions(
    id: Signal<String>,
    status: Signal<String>,
    details: RwSignal<Option<Value>>,
    notice: RwSignal<Option<String>>,
    error: RwSignal<Option<String>>,
    busy: RwSignal<bool>,
) -> impl IntoView {
    let session = session::current();
    let act = move |what: &'static str| {
        let id = api::segment(&id.get_untracked());
        busy.set(true);
        notice.set(Some(format!("{what}…")));
        leptos::task::spawn_local(async move {
            let result = match what {
                "Savepoint" => api::post::<_, Value>(&format!("/jobs/{id}/savepoint"), &json!({}))
                    .await
                    .map(|s| format!("Savepoint {} taken", s["id"].as_str().unwrap_or("?"))),
                "Stop with savepoint" => {
                    api::post::<_, Value>(&format!("/jobs/{id}/savepoint"), &json!({"stop": true}))
                        .await
                        .map(|s| {
                            format!("Stopped with savepoint {}", s["id"].as_str().unwrap_or("?"))
                        })
                }
                "Cancel" => api::post::<_, Value>(&format!("/jobs/{id}/cancel"), &json!({}))
                    .await
                    .map(|_| "Cancelled".to_string()),
                _ => api::post::<_, Value>(&format!("/jobs/{id}/resume"), &json!({}))
                    .await
                    .map(|_| "Resumed".to_string()),
            };
            match result {
                Ok(text) => {
                    // The page's views stop asking a job that ended at once.
                    let ended = match what {
                        "Cancel" => Some("CANCELLED"),
                        "Stop with savepoint" => Some("STOPPED"),
                        _ => None,
                    };
                    if let Some(status) = ended {
                        details.update(|d| {
                            if let Some(d) = d {
                                d["status"] = status.into();
                            }
                        });
                    }
                    notice.set(Some(text));
                    error.set(None);
                }
                Err(e) => {
                    notice.set(None);
                    error.set(Some(e.to_string()));
                }
            }
            busy.set(false);
        });
    };
    let running = move || status.get() == "RUNNING";
    view! {
        <div class="actions" role="toolbar" aria-label="job actions">
            <Show when=move || running() && session.may("job.savepoint")>
                <button on:click=move |_| act("Savepoint") disabled=move || busy.get()>"Savepoint"</button>
                <button on:click=move |_| act("Stop with savepoint") disabled=move || busy.get()>"Stop with savepoint"</button>
            </Show>
            <Show when=move || running() && session.may("job.cancel")>
                <button class="danger" on:click=move |_| act("Cancel") disabled=move || busy.get()>"Cancel"</button>
            </Show>
            <Show when=move || status.get() == "SUSPENDED" && session.may("job.resume")>
                <button on:click=move |_| act("Resume") disabled=move || busy.get()>"Resume"</button>
            </Show>
        </div>
    }
}

fn series(h: &Value, key: &str) -> Vec<(f64, f64)> {
    h["points"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p["t_ms"].as_f64()?, p[key].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn charts(h: &Value) -> impl IntoView + use<> {
    let checkpoints: Vec<&Value> = h["checkpoints"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let cp = |k: &str| -> Vec<(f64, f64)> {
        checkpoints
            .iter()
            .filter_map(|c| Some((c["time_ms"].as_f64()?, c[k].as_f64()?)))
            .collect()
    };
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    let ms = |v: f64| format!("{v:.0} ms");
    view! {
        {line_chart("Throughput", vec![
            Series { label: "read", class: "c1", points: series(h, "read_per_s") },
            Series { label: "written", class: "c2", points: series(h, "written_per_s") },
        ], graph::rate)}
        {line_chart("Backpressure (10 s average)", vec![
            Series { label: "busiest operator", class: "c3", points: series(h, "backpressure") },
        ], pct)}
        {line_chart("Latency (markers)", vec![
            Series { label: "p50", class: "c1", points: series(h, "latency_p50_ms") },
            Series { label: "p99", class: "c3", points: series(h, "latency_p99_ms") },
        ], ms)}
        {line_chart("Checkpoint duration", vec![
            Series { label: "duration", class: "c2", points: cp("duration_ms") },
        ], ms)}
        {line_chart("Checkpoint size", vec![
            Series { label: "size", class: "c1", points: cp("size_bytes") },
        ], bytes)}
    }
}

fn checkpoint_table(h: &Value) -> impl IntoView + use<> {
    let mut rows: Vec<Value> = h["checkpoints"].as_array().cloned().unwrap_or_default();
    rows.reverse();
    let empty = rows.is_empty();
    let rows = rows
        .into_iter()
        .take(20)
        .map(|c| {
            view! {
                <tr>
                    <td class="num">{c["id"].as_u64().unwrap_or(0)}</td>
                    <td>{clock(c["time_ms"].as_f64().unwrap_or_default())}</td>
                    <td class="num">{format!("{} ms", c["duration_ms"].as_u64().unwrap_or(0))}</td>
                    <td class="num">{bytes(c["size_bytes"].as_f64().unwrap_or_default())}</td>
                    <td>{if c["final"].as_bool() == Some(true) { "yes" } else { "" }}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-scroll">
            <table aria-label="checkpoint history">
                <thead><tr><th>"Id"</th><th>"Completed"</th><th>"Duration"</th><th>"Size"</th><th>"Final"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        {empty.then(|| view! { <p class="hint">"No checkpoint completed yet (or the job does not checkpoint)."</p> })}
    }
}

#[component]
fn Savepoints(details: Value) -> impl IntoView {
    let session = session::current();
    let sql = details["sql"].as_str().unwrap_or_default().to_string();
    let parallelism = details["parallelism"].as_u64();
    let error = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    let list: Vec<String> = details["savepoints"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let empty = list.is_empty();
    let items = list
        .into_iter()
        .map(|sp| {
            let (sql, navigate) = (sql.clone(), navigate.clone());
            let label = sp.clone();
            let start = move |_| {
                let request = json!({"sql": sql, "parallelism": parallelism, "from_savepoint": sp});
                let navigate = navigate.clone();
                leptos::task::spawn_local(async move {
                    match api::post::<_, Value>("/jobs", &request).await {
                        Ok(job) => navigate(
                            &format!("/jobs/{}", api::segment(job["id"].as_str().unwrap_or_default())),
                            Default::default(),
                        ),
                        Err(e) => error.set(Some(e.to_string())),
                    }
                });
            };
            view! {
                <li>
                    <code>{label.clone()}</code>
                    <Show when=move || session.may("job.submit")>
                        <button class="small" on:click=start.clone()
                            aria-label=format!("start a new job from {label}")>"Start from it"</button>
                    </Show>
                </li>
            }
        })
        .collect_view();
    view! {
        <section aria-label="savepoints">
            <h2>"Savepoints"</h2>
            {move || crate::alert(error.get())}
            <ul class="plain">{items}</ul>
            {empty.then(|| view! { <p class="hint">"None taken."</p> })}
        </section>
    }
}

#[component]
fn Exceptions(details: Value) -> impl IntoView {
    let list = details["exceptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let empty = list.is_empty();
    let items = list
        .into_iter()
        .map(|e| {
            view! {
                <li><span class="when">{clock(e["time_ms"].as_f64().unwrap_or_default())}</span>" "
                    <code>{e["message"].as_str().unwrap_or_default().to_string()}</code></li>
            }
        })
        .collect_view();
    view! {
        <section aria-label="exceptions">
            <h2>{format!("Exceptions and restarts ({})", details["restarts"].as_u64().unwrap_or(0))}</h2>
            <ul class="plain">{items}</ul>
            {empty.then(|| view! { <p class="hint">"None."</p> })}
        </section>
    }
}

/// Where each subtask runs, when the server runs jobs on a cluster.
#[component]
fn Placement(details: Value) -> impl IntoView {
    let subtasks = details["cluster"]["subtasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (!subtasks.is_empty()).then(|| {
        let rows = subtasks
            .into_iter()
            .map(|s| {
                view! {
                    <tr>
                        <td class="num">{s["chain"].as_u64().unwrap_or(0)}</td>
                        <td class="num">{s["subtask"].as_u64().unwrap_or(0)}</td>
                        <td>{s["task_manager"].as_str().unwrap_or_default().to_string()}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <section aria-label="placement">
                <h2>"Where it runs"</h2>
                <p>{format!("Cluster status {} (attempt {})",
                    details["cluster"]["status"].as_str().unwrap_or("?"),
                    details["cluster"]["attempt"].as_u64().unwrap_or(0))}</p>
                <table aria-label="subtasks">
                    <thead><tr><th>"Chain"</th><th>"Subtask"</th><th>"TaskManager"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </section>
        }
    })
}

/// The job's dead letters: counts per reason, the recent records filtered by reason,
/// each original record shown as data.
#[component]
fn DeadLetters(
    id: Signal<String>,
    status: Signal<String>,
    acting: RwSignal<bool>,
) -> impl IntoView {
    let letters = RwSignal::new(Value::Null);
    let reason = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    poll(Duration::from_secs(2), move || {
        let id = api::segment(&id.get_untracked());
        // Only a running job has a live dead-letter output; while an action may be
        // ending the job, it is not asked.
        let running = status.get_untracked() == "RUNNING" && !acting.get_untracked();
        Box::pin(async move {
            if !running {
                return;
            }
            match api::get::<Value>(&format!("/jobs/{id}/dead-letters")).await {
                Ok(l) => {
                    letters.set(l);
                    error.set(None);
                }
                Err(e) if e.status == 409 => letters.set(Value::Null),
                Err(e) => error.set(Some(e.to_string())),
            }
        })
    });
    let reasons = move || {
        letters
            .with(|l| {
                l["counts"].as_object().map(|c| {
                    c.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect::<Vec<_>>()
                })
            })
            .unwrap_or_default()
    };
    let rows = move || {
        let wanted = reason.get();
        letters.with(|l| l["recent"].as_array().cloned().unwrap_or_default())
            .into_iter()
            .rev()
            .filter(|r| wanted.is_empty() || r["reason"].as_str() == Some(&wanted))
            .take(50)
            .map(|r| view! {
                <tr>
                    <td>{clock(r["time"].as_f64().unwrap_or_default())}</td>
                    <td>{r["operator"].as_str().unwrap_or_default().to_string()}</td>
                    <td>{r["reason"].as_str().unwrap_or_default().to_string()}</td>
                    <td>{r["message"].as_str().unwrap_or_default().to_string()}</td>
                    <td>{r["position"].as_str().unwrap_or_default().to_string()}</td>
                    <td><pre class="raw">{r["raw"].as_str().unwrap_or_default().to_string()}</pre></td>
                </tr>
            })
            .collect_view()
    };
    view! {
        <section aria-label="dead letters">
            <h2>"Dead letters"</h2>
            {move || crate::alert(error.get())}
            <div class="row">
                <label for="reason">"Reason"</label>
                <select id="reason" on:change=move |ev| reason.set(event_target_value(&ev))>
                    <option value="">"all"</option>
                    {move || reasons().into_iter().map(|(r, n)| view! {
                        <option value=r.clone()>{format!("{r} ({n})")}</option>
                    }).collect_view()}
                </select>
            </div>
            <div class="table-scroll">
                <table aria-label="dead-letter records">
                    <thead><tr><th>"Time"</th><th>"Operator"</th><th>"Reason"</th><th>"Message"</th><th>"Position"</th><th>"Original record"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
}
