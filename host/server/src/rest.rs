//! The REST API under `/api/v1` (axum), a thin layer over [`Service`]: it reads the
//! caller's key and the request, and maps [`ServiceError`]s to statuses with a JSON body
//! `{"error": "..."}`. The OpenAPI document is generated from these handlers (utoipa)
//! and served at `/api/v1/openapi.json`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fungi_security::{AuditRecord, Principal};
use fungi_tenancy::{Tenant, TrustPolicy};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::service::{
    CreateKey, CreateTenant, CreatedKey, DeadLetters, ExplainSql, Explained, FileEntry, JobDetails,
    JobHistory, JobStats, RegisterFunction, Savepoint, Service, ServiceError, SubmitJob,
    TakeSavepoint, TenantUsage, UpgradeJob, WhoAmI,
};
use crate::store::{FunctionRecord, JobRecord, KeyRecord, PluginRecord};

/// The error body of every failed call.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field, object or rule.
    pub error: String,
}

/// A [`ServiceError`] as an HTTP response.
pub struct ApiError(ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServiceError::Forbidden(_) | ServiceError::Quota(_) => StatusCode::FORBIDDEN,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        let retry_after = match &self.0 {
            ServiceError::RateLimited { retry_after_ms, .. } => {
                Some(retry_after_ms.div_ceil(1000).max(1))
            }
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.0.to_string(),
            }),
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> ApiResult<Self> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let what = format!("{} {}", parts.method, parts.uri.path());
        Ok(Caller(service.authenticate(bearer, &what)?))
    }
}

/// A JSON body whose every problem (not JSON, a missing or unknown field, a wrong type)
/// is a 400 naming it.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<Service>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, service: &Arc<Service>) -> ApiResult<Self> {
        let what = format!("{} {}", req.method(), req.uri().path());
        match Json::<T>::from_request(req, service).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                let reason = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        "send the body as JSON with 'Content-Type: application/json'".to_string()
                    }
                    other => other.body_text(),
                };
                service.audit_bad_request(None, &what, &reason);
                Err(ApiError(ServiceError::BadRequest(reason)))
            }
        }
    }
}

/// `?limit=N` of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// How many of the newest records (default 100, at most 10 000).
    pub limit: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/jobs", request_body = SubmitJob,
    responses((status = 201, body = JobRecord), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn submit_job(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Body(req): Body<SubmitJob>,
) -> ApiResult<(StatusCode, Json<JobRecord>)> {
    Ok((StatusCode::CREATED, Json(s.submit_job(&p, req).await?)))
}

#[utoipa::path(get, path = "/api/v1/jobs",
    responses((status = 200, body = Vec<JobRecord>), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
async fn list_jobs(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<JobRecord>>> {
    Ok(Json(s.list_jobs(&p)?))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = JobDetails), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn get_job(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobDetails>> {
    Ok(Json(s.get_job(&p, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = JobRecord), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn cancel_job(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobRecord>> {
    Ok(Json(s.cancel_job(&p, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/resume", params(("id" = String, Path)),
    responses((status = 200, body = JobRecord), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn resume_job(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobRecord>> {
    Ok(Json(s.resume_job(&p, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/savepoint", params(("id" = String, Path)),
    request_body = TakeSavepoint,
    responses((status = 200, body = Savepoint), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn savepoint_job(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(req): Body<TakeSavepoint>,
) -> ApiResult<Json<Savepoint>> {
    Ok(Json(s.savepoint_job(&p, &id, req).await?))
}

#[utoipa::path(post, path = "/api/v1/sql/explain", request_body = ExplainSql,
    responses((status = 200, body = Explained), (status = 400, body = ErrorBody,
        description = "the script does not plan: why, with the planner's hint")),
    security(("api_key" = [])))]
async fn explain_sql(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Body(req): Body<ExplainSql>,
) -> ApiResult<Json<Explained>> {
    Ok(Json(s.explain_sql(&p, req).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/upgrade", params(("id" = String, Path)),
    request_body = UpgradeJob,
    responses((status = 200, body = JobRecord, description = "the new version, running"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "refused; the old version keeps running")),
    security(("api_key" = [])))]
async fn upgrade_job(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(req): Body<UpgradeJob>,
) -> ApiResult<Json<JobRecord>> {
    Ok(Json(s.upgrade_job(&p, &id, req).await?))
}

#[utoipa::path(put, path = "/api/v1/tenants/{id}/trust", params(("id" = String, Path)),
    request_body = TrustPolicy,
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn set_trust(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(policy): Body<TrustPolicy>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.set_trust(&p, &id, policy)?))
}

#[utoipa::path(get, path = "/metrics",
    responses((status = 200, content_type = "text/plain; version=0.0.4",
        description = "Prometheus text exposition")),
    security(("api_key" = [])))]
async fn metrics(State(s): State<Arc<Service>>, Caller(p): Caller) -> ApiResult<Response> {
    let text = s.metrics(&p)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_tenant(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Body(req): Body<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    Ok((StatusCode::CREATED, Json(s.create_tenant(&p, req)?)))
}

#[utoipa::path(get, path = "/api/v1/tenants",
    responses((status = 200, body = Vec<Tenant>)), security(("api_key" = [])))]
async fn list_tenants(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<Tenant>>> {
    Ok(Json(s.list_tenants(&p)?))
}

/// `?force=true` of a tenant's deletion.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteTenantQuery {
    /// Cancel the tenant's running jobs first (otherwise a tenant with running jobs is
    /// not deleted).
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/api/v1/tenants/{id}", params(("id" = String, Path), DeleteTenantQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn delete_tenant(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Query(q): Query<DeleteTenantQuery>,
) -> ApiResult<StatusCode> {
    s.delete_tenant(&p, &id, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn create_key(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Body(req): Body<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    Ok((StatusCode::CREATED, Json(s.create_key(&p, req)?)))
}

#[utoipa::path(get, path = "/api/v1/keys",
    responses((status = 200, body = Vec<KeyRecord>)), security(("api_key" = [])))]
async fn list_keys(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<KeyRecord>>> {
    Ok(Json(s.list_keys(&p)?))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn revoke_key(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.revoke_key(&p, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>)), security(("api_key" = [])))]
async fn audit(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    Ok(Json(s.audit_log(&p, q.limit)?))
}

/// The header carrying a plugin's signature at upload.
pub const SIGNATURE_HEADER: &str = "x-fungi-signature";

#[utoipa::path(put, path = "/api/v1/plugins/{name}",
    params(("name" = String, Path),
        ("x-fungi-signature" = Option<String>, Header,
            description = "base64 cosign-compatible signature of the bytes")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the component bytes (sent as application/wasm or any other type)"),
    responses((status = 201, body = PluginRecord), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn upload_plugin(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<PluginRecord>)> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                ApiError(ServiceError::BadRequest(format!(
                    "the {SIGNATURE_HEADER} header is not text"
                )))
            })
        })
        .transpose()?;
    Ok((
        StatusCode::CREATED,
        Json(
            s.upload_plugin(&p, &name, bytes.to_vec(), signature)
                .await?,
        ),
    ))
}

#[utoipa::path(get, path = "/api/v1/plugins",
    responses((status = 200, body = Vec<PluginRecord>)), security(("api_key" = [])))]
async fn list_plugins(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<PluginRecord>>> {
    Ok(Json(s.list_plugins(&p)?))
}

#[utoipa::path(get, path = "/api/v1/plugins/{name}", params(("name" = String, Path)),
    responses((status = 200, body = PluginRecord), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn get_plugin(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<PluginRecord>> {
    Ok(Json(s.get_plugin(&p, &name)?))
}

#[utoipa::path(delete, path = "/api/v1/plugins/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_plugin(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.delete_plugin(&p, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/files/{path}", params(("path" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = FileEntry), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
async fn upload_file(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(path): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<FileEntry>)> {
    Ok((StatusCode::CREATED, Json(s.upload_file(&p, &path, &bytes)?)))
}

#[utoipa::path(get, path = "/api/v1/files",
    responses((status = 200, body = Vec<FileEntry>)), security(("api_key" = [])))]
async fn list_files(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<FileEntry>>> {
    Ok(Json(s.list_files(&p)?))
}

#[utoipa::path(delete, path = "/api/v1/files/{path}", params(("path" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_file(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(path): Path<String>,
) -> ApiResult<StatusCode> {
    s.delete_file(&p, &path)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/functions", request_body = RegisterFunction,
    responses((status = 201, body = FunctionRecord), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn register_function(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Body(req): Body<RegisterFunction>,
) -> ApiResult<(StatusCode, Json<FunctionRecord>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.register_function(&p, req).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/functions",
    responses((status = 200, body = Vec<FunctionRecord>)), security(("api_key" = [])))]
async fn list_functions(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<FunctionRecord>>> {
    Ok(Json(s.list_functions(&p)?))
}

#[utoipa::path(delete, path = "/api/v1/functions/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_function(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.delete_function(&p, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/dead-letters", params(("id" = String, Path)),
    responses((status = 200, body = DeadLetters), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
async fn job_dead_letters(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeadLetters>> {
    Ok(Json(s.dead_letters(&p, &id)?))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/history", params(("id" = String, Path)),
    responses((status = 200, body = JobHistory), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn job_history(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobHistory>> {
    Ok(Json(s.job_history(&p, &id)?))
}

#[utoipa::path(get, path = "/api/v1/job-stats",
    responses((status = 200, body = Vec<JobStats>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn job_stats(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<JobStats>>> {
    Ok(Json(s.job_stats(&p)?))
}

#[utoipa::path(get, path = "/api/v1/usage",
    responses((status = 200, body = Vec<TenantUsage>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn tenant_usage(
    State(s): State<Arc<Service>>,
    Caller(p): Caller,
) -> ApiResult<Json<Vec<TenantUsage>>> {
    Ok(Json(s.tenant_usage(&p)?))
}

#[utoipa::path(get, path = "/api/v1/whoami",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
async fn whoami(State(s): State<Arc<Service>>, Caller(p): Caller) -> Json<WhoAmI> {
    Json(s.whoami(&p))
}

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Fungi", description = "Fungi's server API"),
    paths(submit_job, list_jobs, get_job, cancel_job, resume_job, savepoint_job, upgrade_job, create_tenant,
        list_tenants, delete_tenant, set_trust, metrics, create_key, list_keys, revoke_key, audit, upload_plugin, list_plugins,
        get_plugin, delete_plugin, upload_file, list_files, delete_file, register_function,
        list_functions, delete_function, job_dead_letters, explain_sql, job_history, job_stats, tenant_usage, whoami),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the metadata store answers (for a server sharing etcd, etcd answers).
async fn readyz(State(s): State<Arc<Service>>) -> Response {
    match fungi_reliability::outside_async_runtime(|| s.check_ready()) {
        Ok(()) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// Outside `/api/`, a `GET` is the dashboard's (a file, or its page for a client-side
/// route); anything else names the endpoint that does not exist.
async fn fallback(req: Request) -> Response {
    let method = req.method();
    if (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
        && !req.uri().path().starts_with("/api/")
    {
        return crate::dashboard::serve(&req);
    }
    ApiError(ServiceError::NotFound(format!(
        "no endpoint {} {}; see /api/v1/openapi.json",
        req.method(),
        req.uri().path()
    )))
    .into_response()
}

/// The REST routes over `service`.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/jobs", post(submit_job).get(list_jobs))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/api/v1/jobs/{id}/resume", post(resume_job))
        .route("/api/v1/jobs/{id}/dead-letters", get(job_dead_letters))
        .route("/api/v1/jobs/{id}/history", get(job_history))
        .route("/api/v1/job-stats", get(job_stats))
        .route("/api/v1/usage", get(tenant_usage))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/jobs/{id}/savepoint", post(savepoint_job))
        .route("/api/v1/jobs/{id}/upgrade", post(upgrade_job))
        .route("/api/v1/sql/explain", post(explain_sql))
        .route("/api/v1/tenants/{id}/trust", axum::routing::put(set_trust))
        .route("/metrics", get(metrics))
        .route("/api/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/api/v1/tenants/{id}", axum::routing::delete(delete_tenant))
        .route("/api/v1/keys", post(create_key).get(list_keys))
        .route("/api/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/plugins", get(list_plugins))
        .route(
            "/api/v1/plugins/{name}",
            axum::routing::put(upload_plugin)
                .get(get_plugin)
                .delete(delete_plugin)
                // Components are bigger than axum's 2 MB default; quotas bound them.
                .layer(axum::extract::DefaultBodyLimit::max(256 << 20)),
        )
        .route("/api/v1/files", get(list_files))
        .route(
            "/api/v1/files/{*path}",
            axum::routing::put(upload_file)
                .delete(delete_file)
                .layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
        )
        .route(
            "/api/v1/functions",
            post(register_function).get(list_functions),
        )
        .route(
            "/api/v1/functions/{name}",
            axum::routing::delete(delete_function),
        )
        .fallback(fallback)
        .with_state(service)
}
