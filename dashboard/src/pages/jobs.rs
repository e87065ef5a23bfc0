//! The jobs of the caller's tenant (every tenant's for admins) with their live rates,
//! and a SQL editor that explains a script (its plan drawn) before running it.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use serde_json::{Value, json};

use crate::session;
use crate::{api, graph, poll};

/// The jobs page.
#[component]
pub fn Jobs() -> impl IntoView {
    let session = session::current();
    let jobs = RwSignal::new(Vec::<Value>::new());
    let stats = RwSignal::new(Vec::<Value>::new());
    let error = RwSignal::new(None::<String>);
    poll(Duration::from_secs(1), move || {
        Box::pin(async move {
            match api::get::<Vec<Value>>("/jobs").await {
                Ok(mut list) => {
                    list.sort_by(|a, b| b["created_ms"].as_i64().cmp(&a["created_ms"].as_i64()));
                    jobs.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            if let Ok(s) = api::get::<Vec<Value>>("/job-stats").await {
                stats.set(s);
            }
        })
    });
    let rows = move || {
        let stats = stats.get();
        jobs.get()
            .into_iter()
            .map(|j| {
                let id = j["id"].as_str().unwrap_or_default().to_string();
                let status = j["status"].as_str().unwrap_or_default().to_string();
                let s = stats.iter().find(|s| s["id"].as_str() == Some(&id));
                let rate = |k: &str| s.and_then(|s| s[k].as_f64()).map(graph::rate).unwrap_or_else(|| "–".into());
                let created = j["created_ms"].as_f64().unwrap_or_default();
                let updated = j["updated_ms"].as_f64().unwrap_or_default();
                let age = if status == "RUNNING" {
                    crate::duration(crate::now_ms() - created)
                } else {
                    format!("ran {}", crate::duration(updated - created))
                };
                let restarts = s.and_then(|s| s["restarts"].as_u64()).map(|r| r.to_string()).unwrap_or_else(|| "–".into());
                view! {
                    <tr>
                        <td><A href=format!("/jobs/{}", api::segment(&id))>{id.clone()}</A></td>
                        <td><span class=format!("status s-{}", status.to_lowercase())>{status.clone()}</span></td>
                        <td>{age}</td>
                        <td class="num">{restarts}</td>
                        <td class="num">{rate("read_per_s")}</td>
                        <td class="num">{rate("written_per_s")}</td>
                        <td class="num">{j["parallelism"].as_u64().unwrap_or(1)}</td>
                        <td>{j["tenant"].as_str().unwrap_or_default().to_string()}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <h1>"Jobs"</h1>
        {move || crate::alert(error.get())}
        <Show when=move || session.may("job.submit")>
            <Submit/>
        </Show>
        <div class="table-scroll">
            <table aria-label="jobs">
                <thead><tr>
                    <th>"Job"</th><th>"Status"</th><th>"Uptime"</th><th>"Restarts"</th>
                    <th>"Read"</th><th>"Written"</th><th>"Slots"</th><th>"Tenant"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <Show when=move || jobs.with(Vec::is_empty)>
            <p class="hint">"No jobs yet."</p>
        </Show>
    }
}

/// A SQL script: explained first (plan, graph, settings, quota), then run.
#[component]
pub fn Submit() -> impl IntoView {
    let sql = RwSignal::new(String::new());
    let parallelism = RwSignal::new(String::from("1"));
    let from_savepoint = RwSignal::new(String::new());
    let explained = RwSignal::new(None::<(String, Value)>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    let body = move || {
        let p = parallelism.get_untracked().trim().parse::<u32>().ok();
        (sql.get_untracked(), p)
    };
    let explain = move |_| {
        let (text, p) = body();
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::post::<_, Value>("/sql/explain", &json!({"sql": text, "parallelism": p}))
                .await
            {
                Ok(plan) => {
                    error.set(
                        plan["refused_by_quota"]
                            .as_str()
                            .map(|q| format!("Over quota: {q}")),
                    );
                    explained.set(Some((text, plan)));
                }
                Err(e) => {
                    explained.set(None);
                    error.set(Some(e.to_string()));
                }
            }
            busy.set(false);
        });
    };
    let runnable = move || {
        explained.with(|e| {
            e.as_ref().is_some_and(|(text, plan)| {
                *text == sql.get() && plan["refused_by_quota"].is_null()
            })
        }) && !busy.get()
    };
    let run = move |_| {
        let (text, p) = body();
        let sp = from_savepoint.get_untracked().trim().to_string();
        let navigate = navigate.clone();
        busy.set(true);
        leptos::task::spawn_local(async move {
            let request = json!({"sql": text, "parallelism": p,
                "from_savepoint": (!sp.is_empty()).then_some(sp)});
            match api::post::<_, Value>("/jobs", &request).await {
                Ok(job) => {
                    let id = job["id"].as_str().unwrap_or_default().to_string();
                    navigate(&format!("/jobs/{}", api::segment(&id)), Default::default());
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="submit" aria-label="submit a job">
            <h2>"New job"</h2>
            <label for="sql">"SQL script (tables, settings and functions, then one INSERT INTO)"</label>
            <textarea id="sql" rows="10" spellcheck="false" prop:value=move || sql.get()
                on:input=move |ev| sql.set(event_target_value(&ev))></textarea>
            <div class="row">
                <label for="parallelism">"Parallelism"</label>
                <input id="parallelism" type="number" min="1" max="256" class="short"
                    prop:value=move || parallelism.get()
                    on:input=move |ev| parallelism.set(event_target_value(&ev))/>
                <label for="from-savepoint">"From savepoint"</label>
                <input id="from-savepoint" placeholder="job-…/sp-3" prop:value=move || from_savepoint.get()
                    on:input=move |ev| from_savepoint.set(event_target_value(&ev))/>
                <button on:click=explain disabled=move || busy.get()>"Explain"</button>
                <button class="primary" on:click=run disabled=move || !runnable()
                    title="Explain the script first">"Run"</button>
            </div>
            {move || crate::alert(error.get())}
            {move || explained.get().map(|(_, plan)| view! {
                <div class="explained" aria-label="plan">
                    {graph::draw(&plan["graph"], &[])}
                    <details>
                        <summary>"Physical plan and settings"</summary>
                        <pre>{plan["plan"].as_str().unwrap_or_default().to_string()}</pre>
                        <pre>{serde_json::to_string_pretty(&plan["settings"]).unwrap_or_default()}</pre>
                    </details>
                </div>
            })}
        </section>
    }
}
