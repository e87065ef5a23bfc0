//! Sign-in with an API key (`fgk_...`) or a JWT.

use leptos::prelude::*;

use crate::api;
use crate::session::{self, Me};

/// The sign-in form.
#[component]
pub fn SignIn() -> impl IntoView {
    let session = session::current();
    let credential = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = credential.get_untracked().trim().to_string();
        if text.is_empty() {
            error.set(Some("enter an API key (fgk_...) or a token".into()));
            return;
        }
        busy.set(true);
        session::remember(&text);
        leptos::task::spawn_local(async move {
            match api::get::<Me>("/whoami").await {
                Ok(me) => {
                    error.set(None);
                    session.notice.set(None);
                    session.me.set(Some(me));
                }
                Err(e) => {
                    session::forget();
                    error.set(Some(format!("Sign-in failed: {}", e.message)));
                }
            }
            busy.set(false);
        });
    };
    view! {
        <main class="signin">
            <h1>"Fungi"</h1>
            <form on:submit=submit>
                <label for="credential">"API key or token"</label>
                <input id="credential" name="credential" type="password" autocomplete="off"
                    placeholder="fgk_…" prop:value=move || credential.get()
                    on:input=move |ev| credential.set(event_target_value(&ev))/>
                <button type="submit" disabled=move || busy.get()>"Sign in"</button>
            </form>
            {move || crate::alert(error.get().or_else(|| session.notice.get().map(|n| format!("Signed out: {n}"))))}
            <p class="hint">"The key stays in this browser tab's session and is sent only to this server."</p>
        </main>
    }
}
