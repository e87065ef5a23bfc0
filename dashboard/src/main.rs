//! Fungi's web dashboard: a Leptos app rendered in the browser, served by
//! `fungi server` on the API's origin. Every view is made from the REST API under
//! `/api/v1`, called with the signed-in credential, so it shows exactly what the API
//! allows that caller; buttons the caller's role may not use are not drawn.

mod api;
mod chart;
mod graph;
mod pages;
mod session;

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::session::Me;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// Calls `load` now and then every `every` while the calling view lives; a call still
/// running when the next is due is not doubled.
pub fn poll(
    every: Duration,
    load: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>> + 'static,
) {
    let busy = std::rc::Rc::new(std::cell::Cell::new(false));
    let load = std::rc::Rc::new(load);
    let tick = move || {
        if busy.replace(true) {
            return;
        }
        let (busy, fut) = (busy.clone(), load());
        leptos::task::spawn_local(async move {
            fut.await;
            busy.set(false);
        });
    };
    tick();
    if let Ok(handle) = set_interval_with_handle(tick, every) {
        on_cleanup(move || handle.clear());
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// A duration, short: `3 h 2 min`, `42 s`.
pub fn duration(ms: f64) -> String {
    let s = (ms / 1000.0).max(0.0) as u64;
    match s {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

/// A time of day from ms since the epoch (the browser's zone).
pub fn clock(ms: f64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms));
    format!(
        "{:02}:{:02}:{:02}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}

/// Bytes, short.
pub fn bytes(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n:.0} B"),
    }
}

/// An error line screen readers announce.
pub fn alert(message: Option<String>) -> impl IntoView {
    message.map(|m| view! { <p class="error" role="alert">{m}</p> })
}

#[component]
fn App() -> impl IntoView {
    let session = session::start();
    // A credential kept from earlier in this browser session signs in again.
    if session::key().is_some() {
        leptos::task::spawn_local(async move {
            if let Ok(me) = api::get::<Me>("/whoami").await {
                session.me.set(Some(me));
            }
        });
    }
    let first_render = Effect::new(move |_| {
        if let Some(w) = web_sys::window() {
            let t = w.performance().map(|p| p.now()).unwrap_or_default();
            let _ = js_sys::Reflect::set(&w, &"fungiFirstRenderMs".into(), &t.into());
        }
    });
    let _ = first_render;
    view! {
        <Router>
            <Show when=move || session.me.with(Option::is_some)
                fallback=move || view! { <pages::signin::SignIn/> }>
                <Shell/>
                <main>
                    <Routes fallback=|| view! { <p>"No such page."</p> }>
                        <Route path=path!("/") view=pages::jobs::Jobs/>
                        <Route path=path!("/jobs") view=pages::jobs::Jobs/>
                        <Route path=path!("/jobs/:id") view=pages::job::Job/>
                        <Route path=path!("/plugins") view=pages::plugins::Plugins/>
                        <Route path=path!("/tenants") view=pages::admin::Tenants/>
                        <Route path=path!("/keys") view=pages::admin::Keys/>
                        <Route path=path!("/audit") view=pages::admin::Audit/>
                    </Routes>
                </main>
            </Show>
        </Router>
    }
}

/// The header: where to go (what the role may read), who is signed in, sign out.
#[component]
fn Shell() -> impl IntoView {
    let session = session::current();
    let who = move || {
        session
            .me
            .get()
            .map(|m| format!("{} · {} · tenant {}", m.key_id, m.role, m.tenant))
    };
    let sign_out = move |_| {
        session::forget();
        session.me.set(None);
    };
    view! {
        <header>
            <span class="brand">"Fungi"</span>
            <nav aria-label="main">
                <A href="/jobs">"Jobs"</A>
                <Show when=move || session.may("plugin.list")><A href="/plugins">"Plugins"</A></Show>
                <Show when=move || session.may("tenant.list")><A href="/tenants">"Tenants"</A></Show>
                <Show when=move || session.may("key.list")><A href="/keys">"Keys"</A></Show>
                <Show when=move || session.may("audit.read")><A href="/audit">"Audit"</A></Show>
            </nav>
            <span class="who" aria-label="signed in as">{who}</span>
            <button class="link" on:click=sign_out>"Sign out"</button>
        </header>
    }
}
