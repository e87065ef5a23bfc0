//! Planning a script without running it: what `EXPLAIN` shows, the dataflow graph, the
//! settings it would run with and whether the tenant's quotas would admit it.

use super::jobs::{check_request, effective_settings, job_shape};
use super::*;

/// `POST /sql/explain`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainSql {
    /// A SQL script with exactly one `INSERT INTO`, as for `POST /jobs`.
    pub sql: String,
    /// Parallelism of every operator (default 1).
    #[serde(default)]
    pub parallelism: Option<u32>,
}

/// A planned script.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Explained {
    /// The physical plan as text: operators, chains, parallelism, edges.
    pub plan: String,
    /// The dataflow: nodes (operators with their parallelism) and edges.
    #[schema(value_type = Object)]
    pub graph: serde_json::Value,
    /// The settings it would run with.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Why the tenant's quotas would refuse it, if they would.
    pub refused_by_quota: Option<String>,
}

impl Service {
    /// Plans the caller's script as a submission would, runs nothing and stores
    /// nothing. A script that does not plan is a bad request naming the problem (with
    /// the planner's hint).
    pub async fn explain_sql(&self, p: &Principal, req: ExplainSql) -> ServiceResult<Explained> {
        self.authorize(p, Action::SqlExplain, &p.tenant, "")?;
        let result = async {
            let parallelism = check_request(&req.sql, req.parallelism)?;
            let tenant = self.tenant(&p.tenant)?;
            let job = JobRecord {
                id: "explain".into(),
                tenant: p.tenant.clone(),
                sql: req.sql,
                parallelism,
                status: JobStatus::Running,
                error: None,
                from_savepoint: None,
                created_ms: now_ms(),
                updated_ms: now_ms(),
                settings: serde_json::json!({ "requested_parallelism": parallelism }),
            };
            let plan = self.plan(&job).await?;
            let refused_by_quota = tenant
                .quotas
                .admit_plan(&tenant.id, &job_shape(&plan))
                .err()
                .map(|q| q.to_string());
            Ok(Explained {
                plan: self.tenant_paths(&p.tenant).scrub(&plan.explain()),
                graph: graph_json(&plan.graph),
                settings: effective_settings(&plan, parallelism),
                refused_by_quota,
            })
        }
        .await;
        self.done(p, Action::SqlExplain, "", result)
    }
}
