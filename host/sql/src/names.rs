//! Output names for SELECT items that DataFusion would name alike.
//!
//! DataFusion names an unaliased expression by its text with casts left out, so
//! `SUM(v)` and `SUM(CAST(v AS DOUBLE))` in one SELECT get the same name and the query
//! is refused. Flink names such columns `EXPR$n` and answers. Here, when two unaliased
//! items of one SELECT would share a name, the ones with a cast are named by their full
//! text, and each cast inside a function call of theirs is wrapped in `fungi_named(cast,
//! 'text')`, an identity function whose name carries the text (so two aggregates over
//! `v` and `CAST(v AS DOUBLE)` are two columns of the aggregation). The planner removes
//! the wrapper before anything runs. Every other item keeps DataFusion's name.

use std::collections::HashMap;
use std::ops::ControlFlow;

use arrow::datatypes::DataType;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, Query, SelectItem, SetExpr, Value, VisitMut, VisitorMut, visit_expressions,
    visit_expressions_mut,
};

/// The wrapper's name.
const NAMED: &str = "fungi_named";

/// Names the SELECT items of `statement` that would otherwise share a name.
pub(crate) fn name_casts_apart(statement: &mut Statement) {
    if let Statement::Statement(s) = statement {
        let _ = s.visit(&mut Selects);
    }
}

struct Selects;

impl VisitorMut for Selects {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        name_body(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn name_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => name_items(&mut select.projection),
        SetExpr::SetOperation { left, right, .. } => {
            name_body(left);
            name_body(right);
        }
        _ => {}
    }
}

fn has_cast(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Cast { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The text of `e` without its casts (what DataFusion's name is made of).
fn name_without_casts(e: &Expr) -> String {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        if let Expr::Cast { expr, .. } = x {
            *x = (**expr).clone();
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

fn name_items(items: &mut [SelectItem]) {
    let expr_of = |item: &SelectItem| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
        _ => None,
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in items.iter().filter_map(expr_of) {
        *seen.entry(name_without_casts(&e)).or_default() += 1;
    }
    for item in items.iter_mut() {
        let Some(e) = expr_of(item) else { continue };
        if !has_cast(&e) || seen.get(&name_without_casts(&e)).is_none_or(|&n| n < 2) {
            continue;
        }
        let mut expr = e.clone();
        wrap_casts_in_calls(&mut expr);
        *item = match item {
            SelectItem::ExprWithAlias { alias, .. } => SelectItem::ExprWithAlias {
                expr,
                alias: alias.clone(),
            },
            _ => SelectItem::ExprWithAlias {
                expr,
                alias: Ident::with_quote('"', e.to_string()),
            },
        };
    }
}

/// Wraps each cast that is an argument of a function call in `fungi_named`.
fn wrap_casts_in_calls(e: &mut Expr) {
    let _ = visit_expressions_mut(e, |x| {
        if let Expr::Function(f) = x
            && f.name.to_string() != NAMED
            && let FunctionArguments::List(list) = &mut f.args
        {
            for arg in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(a)) = arg
                    && matches!(a, Expr::Cast { .. })
                {
                    *a = named(a.clone());
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `fungi_named(e, 'text of e')`.
fn named(e: Expr) -> Expr {
    let text = e.to_string();
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(NAMED)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                    Value::SingleQuotedString(text),
                ))),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `fungi_named(x, label)`: `x`, under a name that includes `label`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Named {
    signature: Signature,
}

impl Named {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Named {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for Named {
    fn name(&self) -> &str {
        NAMED
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn simplify(
        &self,
        mut args: Vec<datafusion::logical_expr::Expr>,
        _info: &SimplifyContext,
    ) -> datafusion::common::Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(args.swap_remove(0)))
    }

    fn invoke_with_args(
        &self,
        mut args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        Ok(args.args.swap_remove(0))
    }
}
