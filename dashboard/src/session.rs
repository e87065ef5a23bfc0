//! Who is signed in. The credential lives in the browser session only
//! (`sessionStorage`, gone when the tab closes); what the page shows follows the
//! caller's permissions as `GET /api/v1/whoami` reports them.

use leptos::prelude::*;
use serde::Deserialize;

const KEY: &str = "fungi.credential";

/// The caller, as the server sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Me {
    /// The key's id (or the token's subject).
    pub key_id: String,
    /// The caller's tenant.
    pub tenant: String,
    /// The caller's role.
    pub role: String,
    /// What the role allows (`job.submit`, ...).
    pub permissions: Vec<String>,
}

impl Me {
    /// Whether the caller may perform `action`.
    pub fn may(&self, action: &str) -> bool {
        self.permissions.iter().any(|p| p == action)
    }
}

/// The page's session: the caller once signed in, and why the last sign-in ended
/// (one per page, reached through [`current`] by components and calls alike).
#[derive(Clone, Copy)]
pub struct Session {
    /// The caller, when signed in.
    pub me: RwSignal<Option<Me>>,
    /// Why the caller was signed out, if the server said so.
    pub notice: RwSignal<Option<String>>,
}

impl Session {
    /// Whether the signed-in caller may perform `action`.
    pub fn may(&self, action: &str) -> bool {
        self.me.with(|m| m.as_ref().is_some_and(|m| m.may(action)))
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// The credential of this browser session.
pub fn key() -> Option<String> {
    storage()?.get_item(KEY).ok()?
}

/// Keeps `credential` for this browser session.
pub fn remember(credential: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(KEY, credential);
    }
}

/// Forgets the credential.
pub fn forget() {
    if let Some(s) = storage() {
        let _ = s.remove_item(KEY);
    }
}

thread_local! {
    /// The page's one session, reachable from calls that run outside any component.
    static CURRENT: std::cell::Cell<Option<Session>> = const { std::cell::Cell::new(None) };
}

/// Makes the page's session (once, at start).
pub fn start() -> Session {
    let session = Session {
        me: RwSignal::new(None),
        notice: RwSignal::new(None),
    };
    CURRENT.with(|c| c.set(Some(session)));
    session
}

/// The page's session.
pub fn current() -> Session {
    CURRENT
        .with(|c| c.get())
        .expect("the session starts with the page")
}

/// The server no longer accepts the credential: sign out, saying why.
pub fn expired(why: &str) {
    forget();
    let session = current();
    session.me.set(None);
    session.notice.set(Some(why.to_string()));
}
