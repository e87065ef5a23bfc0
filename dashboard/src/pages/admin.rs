//! Tenants with quotas, keys (a new key's secret shown once; revoke) and the audit
//! log with filters, for admins and tenant admins.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::{Value, json};

use crate::session;
use crate::{api, clock, poll};

/// A JSON object as a definition list (quotas, usage).
pub fn key_values(v: &Value) -> impl IntoView + use<> {
    let items = v.as_object().map(|o| {
        o.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                view! { <dt>{k.replace('_', " ")}</dt><dd>{text}</dd> }
            })
            .collect_view()
    });
    view! { <dl class="kv">{items}</dl> }
}

/// Tenants (admins).
#[component]
pub fn Tenants() -> impl IntoView {
    let tenants = RwSignal::new(Vec::<Value>::new());
    let usage = RwSignal::new(Vec::<Value>::new());
    let error = RwSignal::new(None::<String>);
    poll(Duration::from_secs(5), move || {
        Box::pin(async move {
            match api::get::<Vec<Value>>("/tenants").await {
                Ok(t) => tenants.set(t),
                Err(e) => error.set(Some(e.to_string())),
            }
            if let Ok(u) = api::get::<Vec<Value>>("/usage").await {
                usage.set(u);
            }
        })
    });
    let held = move |id: &str| {
        usage.with(|u| {
            u.iter()
                .find(|t| t["tenant"].as_str() == Some(id))
                .map(|t| {
                    format!(
                        "{} running job(s) on {} slot(s); {} plugin(s), {}",
                        t["running_jobs"].as_u64().unwrap_or(0),
                        t["slots"].as_u64().unwrap_or(0),
                        t["plugins"].as_u64().unwrap_or(0),
                        crate::bytes(t["plugin_bytes"].as_f64().unwrap_or(0.0))
                    )
                })
        })
    };
    view! {
        <h1>"Tenants"</h1>
        {move || crate::alert(error.get())}
        {move || tenants.get().into_iter().map(|t| view! {
            <section class="card" aria-label=format!("tenant {}", t["id"].as_str().unwrap_or_default())>
                <h2>{t["id"].as_str().unwrap_or_default().to_string()}</h2>
                <p class="usage">{held(t["id"].as_str().unwrap_or_default())}</p>
                <h3>"Quotas"</h3>
                {key_values(&t["quotas"])}
                <h3>"Plugin trust"</h3>
                {key_values(&t["trust"])}
            </section>
        }).collect_view()}
    }
}

/// API keys: list, create (the secret shown once), revoke.
#[component]
pub fn Keys() -> impl IntoView {
    let session = session::current();
    let keys = RwSignal::new(Vec::<Value>::new());
    let error = RwSignal::new(None::<String>);
    let created = RwSignal::new(None::<String>);
    let reload = move || {
        leptos::task::spawn_local(async move {
            match api::get::<Vec<Value>>("/keys").await {
                Ok(k) => keys.set(k),
                Err(e) => error.set(Some(e.to_string())),
            }
        })
    };
    reload();
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(String::from("viewer"));
    let tenant = RwSignal::new(String::new());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let t = tenant.get_untracked().trim().to_string();
        let body = json!({"name": name.get_untracked(), "role": role.get_untracked(),
            "tenant": if t.is_empty() { session.me.get_untracked().map(|m| m.tenant).unwrap_or_default() } else { t }});
        leptos::task::spawn_local(async move {
            match api::post::<_, Value>("/keys", &body).await {
                Ok(k) => {
                    created.set(k["key"].as_str().map(str::to_string));
                    error.set(None);
                    reload();
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    let revoke = move |id: String| {
        leptos::task::spawn_local(async move {
            match api::delete(&format!("/keys/{}", api::segment(&id))).await {
                Ok(_) => reload(),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <h1>"API keys"</h1>
        {move || crate::alert(error.get())}
        <Show when=move || session.may("key.create")>
            <form class="submit" on:submit=create aria-label="create a key">
                <div class="row">
                    <label for="key-name">"Name"</label>
                    <input id="key-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                    <label for="key-role">"Role"</label>
                    <select id="key-role" on:change=move |ev| role.set(event_target_value(&ev))>
                        <option value="viewer">"viewer"</option>
                        <option value="developer">"developer"</option>
                        <option value="tenant-admin">"tenant-admin"</option>
                        <Show when=move || session.may("tenant.create")><option value="admin">"admin"</option></Show>
                    </select>
                    <Show when=move || session.may("tenant.list")>
                        <label for="key-tenant">"Tenant"</label>
                        <input id="key-tenant" placeholder="yours" prop:value=move || tenant.get()
                            on:input=move |ev| tenant.set(event_target_value(&ev))/>
                    </Show>
                    <button type="submit" class="primary">"Create key"</button>
                </div>
            </form>
        </Show>
        {move || created.get().map(|k| view! {
            <div class="notice" role="status">
                <p>"The new key, shown once; keep it now:"</p>
                <code class="secret" id="new-key">{k}</code>
            </div>
        })}
        <div class="table-scroll">
            <table aria-label="keys">
                <thead><tr><th>"Id"</th><th>"Name"</th><th>"Role"</th><th>"Tenant"</th><th>"Created"</th><th>"State"</th><th></th></tr></thead>
                <tbody>{move || keys.get().into_iter().map(|k| {
                    let id = k["id"].as_str().unwrap_or_default().to_string();
                    let revoked = k["revoked"].as_bool() == Some(true);
                    let for_button = id.clone();
                    view! {
                        <tr>
                            <td><code>{id.clone()}</code></td>
                            <td>{k["name"].as_str().unwrap_or_default().to_string()}</td>
                            <td>{k["role"].as_str().unwrap_or_default().to_string()}</td>
                            <td>{k["tenant"].as_str().unwrap_or_default().to_string()}</td>
                            <td>{clock(k["created_ms"].as_f64().unwrap_or_default())}</td>
                            <td>{if revoked { "revoked" } else { "active" }}</td>
                            <td>{(!revoked && session.may("key.revoke")).then(|| view! {
                                <button class="small danger" aria-label=format!("revoke key {id}")
                                    on:click=move |_| revoke(for_button.clone())>"Revoke"</button>
                            })}</td>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table>
        </div>
    }
}

/// The audit log, newest first, filtered by who, action and result.
#[component]
pub fn Audit() -> impl IntoView {
    let records = RwSignal::new(Vec::<Value>::new());
    let error = RwSignal::new(None::<String>);
    let filter = RwSignal::new(String::new());
    poll(Duration::from_secs(3), move || {
        Box::pin(async move {
            match api::get::<Vec<Value>>("/audit?limit=500").await {
                Ok(r) => records.set(r),
                Err(e) => error.set(Some(e.to_string())),
            }
        })
    });
    let rows =
        move || {
            let f = filter.get().to_lowercase();
            records
            .get()
            .into_iter()
            .rev()
            .filter(|r| {
                f.is_empty()
                    || ["who", "tenant", "action", "target", "result"]
                        .iter()
                        .any(|k| r[*k].as_str().is_some_and(|v| v.to_lowercase().contains(&f)))
            })
            .take(200)
            .map(|r| view! {
                <tr>
                    <td class="num">{r["seq"].as_i64().unwrap_or(0)}</td>
                    <td>{clock(r["time_ms"].as_f64().unwrap_or_default())}</td>
                    <td><code>{r["who"].as_str().unwrap_or_default().to_string()}</code></td>
                    <td>{r["tenant"].as_str().unwrap_or_default().to_string()}</td>
                    <td>{r["action"].as_str().unwrap_or_default().to_string()}</td>
                    <td>{r["target"].as_str().unwrap_or_default().to_string()}</td>
                    <td>{r["result"].as_str().unwrap_or_default().to_string()}</td>
                </tr>
            })
            .collect_view()
        };
    view! {
        <h1>"Audit log"</h1>
        {move || crate::alert(error.get())}
        <div class="row">
            <label for="audit-filter">"Filter (key, tenant, action, target or result)"</label>
            <input id="audit-filter" prop:value=move || filter.get() on:input=move |ev| filter.set(event_target_value(&ev))/>
        </div>
        <div class="table-scroll">
            <table aria-label="audit log">
                <thead><tr><th>"Seq"</th><th>"Time"</th><th>"Who"</th><th>"Tenant"</th><th>"Action"</th><th>"Target"</th><th>"Result"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}
