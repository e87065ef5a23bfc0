//! Calls to the server's REST API (`/api/v1` on the page's own origin) with the
//! signed-in credential, and what a refusal says.

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::session;

/// A call that did not succeed: the server's status and its `{"error": ...}` text.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status (0 when the server could not be reached).
    pub status: u16,
    /// What the server said, or why the call failed.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            0 => write!(f, "the server cannot be reached: {}", self.message),
            401 => write!(f, "not signed in: {}", self.message),
            403 => write!(f, "refused: {}", self.message),
            429 => write!(f, "too many calls, slowed down: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Results of calls.
pub type ApiResult<T> = Result<T, ApiError>;

fn unreachable(e: gloo_net::Error) -> ApiError {
    ApiError {
        status: 0,
        message: e.to_string(),
    }
}

fn with_key(builder: RequestBuilder) -> RequestBuilder {
    match session::key() {
        Some(key) => builder.header("Authorization", &format!("Bearer {key}")),
        None => builder,
    }
}

async fn read<T: DeserializeOwned>(response: Response) -> ApiResult<T> {
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    if (200..300).contains(&status) {
        let text = if text.is_empty() { "null" } else { &text };
        return serde_json::from_str(text).map_err(|e| ApiError {
            status,
            message: format!("unexpected answer from the server: {e}"),
        });
    }
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(text);
    if status == 401 {
        session::expired(&message);
    }
    Err(ApiError { status, message })
}

/// `GET /api/v1{path}`.
pub async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    let response = with_key(Request::get(&format!("/api/v1{path}")))
        .send()
        .await
        .map_err(unreachable)?;
    read(response).await
}

/// `POST /api/v1{path}` with a JSON body.
pub async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    let request = with_key(Request::post(&format!("/api/v1{path}")))
        .json(body)
        .map_err(unreachable)?;
    read(request.send().await.map_err(unreachable)?).await
}

/// `DELETE /api/v1{path}`.
pub async fn delete(path: &str) -> ApiResult<Value> {
    let response = with_key(Request::delete(&format!("/api/v1{path}")))
        .send()
        .await
        .map_err(unreachable)?;
    read(response).await
}

/// `PUT /api/v1{path}` with a file's bytes and extra headers.
pub async fn put_file(
    path: &str,
    file: web_sys::File,
    headers: &[(&str, String)],
) -> ApiResult<Value> {
    let mut builder = with_key(Request::put(&format!("/api/v1{path}")))
        .header("Content-Type", "application/octet-stream");
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(wasm_bindgen::JsValue::from(file))
        .map_err(unreachable)?;
    read(request.send().await.map_err(unreachable)?).await
}

/// `s` escaped for a path segment.
pub fn segment(s: &str) -> String {
    js_sys::encode_uri_component(s).into()
}
