//! Window markers: the window table functions' `window_start`, `window_end` and
//! `window_time` columns, traced back through projections, filters and aliases to the
//! window they name.

use super::*;

/// The kind of a non-tumbling window marker in `expr`, if any.
pub(super) fn non_tumble_marker(expr: &Expr) -> Option<String> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if let Some((kind, ..)) = marker_call(e)
            && kind != "tumble"
        {
            found = Some(kind);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

/// If `e` is a window marker call: (kind, bound, time expression, a, b).
pub(super) fn marker_call(e: &Expr) -> Option<(String, &'static str, Expr, i64, i64)> {
    let e = strip(e);
    let Expr::ScalarFunction(ScalarFunction { func, args }) = e else {
        return None;
    };
    let bound = match func.name() {
        udfs::START => "start",
        udfs::END => "end",
        udfs::TIME => "time",
        _ => return None,
    };
    let lit_str = |e: &Expr| match strip(e) {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
        _ => None,
    };
    let lit_i64 = |e: &Expr| match strip(e) {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(*v),
        _ => None,
    };
    Some((
        lit_str(&args[0])?,
        bound,
        args[1].clone(),
        lit_i64(&args[2])?,
        lit_i64(&args[3])?,
    ))
}

pub(super) fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        other => other,
    }
}

/// If the group expression `g` (over `input`) is a window bound, the bound and window.
pub(super) fn resolve_marker(
    g: &Expr,
    input: &LogicalPlan,
) -> Result<Option<(&'static str, WindowGroup)>> {
    let found = match strip(g) {
        Expr::Column(c) => find_definition(c, input),
        other => Some((other.clone(), input.clone())),
    };
    let Some((def, scope)) = found else {
        return Ok(None);
    };
    let Some((kind, bound, time, a, b)) = marker_call(&def) else {
        return Ok(None);
    };
    let assigner = match kind.as_str() {
        "tumble" => WindowAssigner::tumbling(a)?,
        "hop" => WindowAssigner::sliding(b, a)?,
        "cumulate" => WindowAssigner::cumulate(a, b)?,
        "session" => WindowAssigner::session(a)?,
        other => return Err(SqlError::Plan(format!("unknown window kind '{other}'"))),
    };
    // The time expression refers to the marker's input; the aggregation sees the same
    // column by name (the window TVF keeps every input column).
    let time = match strip(&time) {
        Expr::Column(c) => Expr::Column(Column::new_unqualified(&c.name)),
        other => other.clone(),
    };
    let _ = scope;
    Ok(Some((bound, WindowGroup { assigner, time })))
}

/// `plan` with the column `name` of the window table function below it kept in its
/// output: projections that dropped it carry it again (appended, so every other column
/// keeps its position). `None` when the column cannot be reached through projections,
/// filters and aliases.
pub(super) fn keep_column(plan: &LogicalPlan, name: &str) -> Result<Option<LogicalPlan>> {
    if plan.schema().index_of_column_by_name(None, name).is_some() {
        return Ok(Some(plan.clone()));
    }
    Ok(Some(match plan {
        LogicalPlan::Projection(p) => {
            let Some(input) = keep_column(&p.input, name)? else {
                return Ok(None);
            };
            let Some(idx) = input.schema().index_of_column_by_name(None, name) else {
                return Ok(None);
            };
            let mut exprs = p.expr.clone();
            exprs.push(Expr::Column(Column::from(
                input.schema().qualified_field(idx),
            )));
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?)
        }
        LogicalPlan::Filter(f) => {
            let Some(input) = keep_column(&f.input, name)? else {
                return Ok(None);
            };
            LogicalPlan::Filter(Filter::try_new(f.predicate.clone(), Arc::new(input))?)
        }
        LogicalPlan::SubqueryAlias(a) => {
            let Some(input) = keep_column(&a.input, name)? else {
                return Ok(None);
            };
            LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(input), a.alias.clone())?)
        }
        _ => return Ok(None),
    }))
}

/// Where the column `c` of `plan`'s output is defined: the expression and its input.
pub(super) fn find_definition(c: &Column, plan: &LogicalPlan) -> Option<(Expr, LogicalPlan)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let idx = p
                .schema
                .index_of_column(c)
                .ok()
                .or_else(|| p.schema.fields().iter().position(|f| f.name() == &c.name))?;
            let e = p.expr.get(idx)?.clone();
            match strip(&e) {
                Expr::Column(inner) if marker_call(&e).is_none() => {
                    find_definition(inner, &p.input)
                }
                _ => Some((e, (*p.input).clone())),
            }
        }
        LogicalPlan::SubqueryAlias(a) => {
            find_definition(&Column::new_unqualified(&c.name), &a.input)
        }
        LogicalPlan::Filter(f) => find_definition(c, &f.input),
        _ => None,
    }
}
