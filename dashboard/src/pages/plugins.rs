//! The tenant's plugins: kind, functions and their Arrow signatures, digest, signature
//! status under the tenant's trust policy, and uploading a component (with its
//! signature) from the browser.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;
use wasm_bindgen::JsCast;

use crate::chart::{Series, line_chart};
use crate::session;
use crate::{api, bytes, poll};

/// The plugins page.
#[component]
pub fn Plugins() -> impl IntoView {
    let session = session::current();
    let plugins = RwSignal::new(Vec::<Value>::new());
    let error = RwSignal::new(None::<String>);
    poll(Duration::from_secs(5), move || {
        Box::pin(async move {
            match api::get::<Vec<Value>>("/plugins").await {
                Ok(list) => {
                    plugins.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        })
    });
    let rows = move || {
        plugins
            .get()
            .into_iter()
            .map(|p| {
                let functions = p["details"]["functions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| view! { <li><code>{signature(&f)}</code></li> })
                    .collect_view();
                let status = signature_status(&p["details"]["signature"]);
                let network = p["details"]["manifest"]["network"].to_string();
                view! {
                    <tr>
                        <td>{p["name"].as_str().unwrap_or_default().to_string()}</td>
                        <td>{p["kind"].as_str().unwrap_or_default().to_string()}</td>
                        <td><ul class="plain">{functions}</ul></td>
                        <td><code class="digest">{p["digest"].as_str().unwrap_or_default().to_string()}</code></td>
                        <td class="num">{bytes(p["bytes"].as_f64().unwrap_or_default())}</td>
                        <td><span class="signature">{status}</span></td>
                        <td><code>{network}</code></td>
                        <td>{p["tenant"].as_str().unwrap_or_default().to_string()}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <h1>"Plugins"</h1>
        {move || crate::alert(error.get())}
        <Show when=move || session.may("plugin.upload")>
            <Upload plugins/>
        </Show>
        <div class="table-scroll">
            <table aria-label="plugins">
                <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Functions"</th><th>"Digest"</th>
                    <th>"Size"</th><th>"Signature"</th><th>"Network"</th><th>"Tenant"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <Usage/>
    }
}

/// `name(arg types) -> return type` of a function as inspected at upload (Arrow types).
fn signature(f: &Value) -> String {
    let name = f["name"].as_str().unwrap_or("?");
    let args: Vec<&str> = f["arguments"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let ret = f["returns"].as_str().unwrap_or("");
    format!("{name}({}) → {ret}", args.join(", "))
}

/// What the tenant's trust policy found of the plugin's signature.
fn signature_status(s: &Value) -> String {
    match s["status"].as_str() {
        Some("verified") => format!(
            "verified (key {}, {})",
            s["key"].as_u64().unwrap_or(0),
            s["fingerprint"].as_str().unwrap_or("?")
        ),
        Some("warning") => format!("warning: {}", s["reason"].as_str().unwrap_or("?")),
        Some("not_checked") => "not checked (trust policy off)".to_string(),
        Some(other) => other.to_string(),
        None => "unknown".to_string(),
    }
}

/// Upload a component, optionally with its signature.
#[component]
fn Upload(plugins: RwSignal<Vec<Value>>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let signature = RwSignal::new(String::new());
    let result = RwSignal::new(None::<Result<String, String>>);
    let file_input = NodeRef::<leptos::html::Input>::new();
    let upload = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(file) = file_input
            .get()
            .and_then(|i| i.unchecked_into::<web_sys::HtmlInputElement>().files())
            .and_then(|f| f.get(0))
        else {
            result.set(Some(Err("choose a component (.wasm) to upload".into())));
            return;
        };
        let mut plugin = name.get_untracked().trim().to_string();
        if plugin.is_empty() {
            plugin = file.name().trim_end_matches(".wasm").to_string();
        }
        let sig = signature.get_untracked().trim().to_string();
        leptos::task::spawn_local(async move {
            let headers: Vec<(&str, String)> = if sig.is_empty() {
                vec![]
            } else {
                vec![("x-fungi-signature", sig)]
            };
            match api::put_file(
                &format!("/plugins/{}", api::segment(&plugin)),
                file,
                &headers,
            )
            .await
            {
                Ok(p) => {
                    let status = signature_status(&p["details"]["signature"]);
                    result.set(Some(Ok(format!(
                        "Uploaded {plugin} ({}), signature: {status}",
                        p["kind"].as_str().unwrap_or("?")
                    ))));
                    if let Ok(list) = api::get::<Vec<Value>>("/plugins").await {
                        plugins.set(list);
                    }
                }
                Err(e) => result.set(Some(Err(e.to_string()))),
            }
        });
    };
    view! {
        <form class="submit" on:submit=upload aria-label="upload a plugin">
            <h2>"Upload a plugin"</h2>
            <div class="row">
                <label for="plugin-file">"Component"</label>
                <input id="plugin-file" type="file" accept=".wasm,application/wasm" node_ref=file_input/>
                <label for="plugin-name">"Name"</label>
                <input id="plugin-name" placeholder="from the file name" prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))/>
            </div>
            <label for="plugin-signature">"Signature (base64, cosign-compatible; optional)"</label>
            <input id="plugin-signature" class="wide" prop:value=move || signature.get()
                on:input=move |ev| signature.set(event_target_value(&ev))/>
            <button type="submit" class="primary">"Upload"</button>
            {move || result.get().map(|r| match r {
                Ok(text) => view! { <p class="notice" role="status">{text}</p> }.into_any(),
                Err(text) => crate::alert(Some(text)).into_any(),
            })}
        </form>
    }
}

/// Each visible tenant's plugin usage over the last minutes, and its limits.
#[component]
fn Usage() -> impl IntoView {
    let usage = RwSignal::new(Vec::<Value>::new());
    let error = RwSignal::new(None::<String>);
    poll(Duration::from_secs(2), move || {
        Box::pin(async move {
            match api::get::<Vec<Value>>("/usage").await {
                Ok(u) => usage.set(u),
                Err(e) => error.set(Some(e.to_string())),
            }
        })
    });
    view! {
        <section aria-label="plugin usage">
            <h2>"Plugin usage"</h2>
            {move || crate::alert(error.get())}
            {move || usage.get().into_iter().map(|t| view! {
                <h3>{format!("Tenant {}", t["tenant"].as_str().unwrap_or_default())}</h3>
                <div class="charts">{usage_charts(&t)}</div>
                <details>
                    <summary>"Limits its plugins run under"</summary>
                    {crate::pages::admin::key_values(&t["limits"])}
                </details>
            }).collect_view()}
        </section>
    }
}

fn usage_charts(t: &Value) -> impl IntoView + use<> {
    let points = t["points"].as_array().cloned().unwrap_or_default();
    let at = |p: &Value| p["t_ms"].as_f64().unwrap_or_default();
    // CPU and throttled time are totals since the server started: drawn per second.
    let per_second = |key: &str| -> Vec<(f64, f64)> {
        points
            .windows(2)
            .map(|w| {
                let secs = ((at(&w[1]) - at(&w[0])) / 1000.0).max(0.001);
                let d = w[1][key].as_f64().unwrap_or(0.0) - w[0][key].as_f64().unwrap_or(0.0);
                (at(&w[1]), (d / secs).max(0.0))
            })
            .collect()
    };
    let level = |key: &str| -> Vec<(f64, f64)> {
        points
            .iter()
            .map(|p| (at(p), p[key].as_f64().unwrap_or(0.0)))
            .collect()
    };
    let traps: Vec<(f64, f64)> = points
        .iter()
        .map(|p| {
            let n: u64 = p["traps"]
                .as_object()
                .map(|o| o.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            (at(p), n as f64)
        })
        .collect();
    let reasons = points
        .last()
        .and_then(|p| p["traps"].as_object().cloned())
        .map(|o| {
            o.iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let share = |v: f64| format!("{:.0}%", v * 100.0);
    let count = |v: f64| format!("{v:.0}");
    view! {
        {line_chart("CPU (plugin seconds per second)", vec![
            Series { label: "cpu", class: "c1", points: per_second("cpu_seconds") },
            Series { label: "throttled", class: "c3", points: per_second("throttled_seconds") },
        ], share)}
        {line_chart("Memory", vec![
            Series { label: "linear memory", class: "c2", points: level("memory_bytes") },
        ], bytes)}
        {line_chart("Live instances", vec![
            Series { label: "instances", class: "c1", points: level("instances") },
        ], count)}
        {line_chart("Traps (since start)", vec![
            Series { label: "traps", class: "c3", points: traps },
        ], count)}
        <p class="hint">{if reasons.is_empty() { "No traps.".to_string() } else { format!("Traps by reason: {reasons}") }}</p>
    }
}
