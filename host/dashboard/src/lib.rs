//! The web dashboard's files (`dashboard/`, a Leptos app compiled to
//! wasm32-unknown-unknown by this crate's build script), embedded so that `fungi server`
//! serves them on the API's origin without a file on disk or a request to another host.

/// One file of the dashboard.
#[derive(Debug)]
pub struct Asset {
    /// Its path under the server's root, e.g. `/app.js`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// A strong validator of its bytes (a quoted hash), for `ETag`.
    pub etag: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
    /// Its bytes, gzip-compressed.
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The file at `path`, if it is one of the dashboard's.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The page every client-side route loads (`/index.html`).
pub fn index() -> &'static Asset {
    asset("/index.html").expect("the build script embeds index.html")
}
