//! Bounds on what one statement may ask of the planner and of the operators that
//! evaluate it: the number of tokens and operators in its text, and how deep its
//! expressions nest once planned.
//!
//! Planning (DataFusion's passes, Fungi's planner) and evaluation (DataFusion's
//! physical expressions) walk expressions recursively, so an expression nested tens of
//! thousands deep — `a + 1 + 1 + ...` parses without recursion into a chain that deep —
//! could overflow a thread's stack, which aborts the whole process. Text is bounded
//! before DataFusion parses it; depth is checked on the logical plan before any other
//! pass walks it, with an explicit stack rather than recursion. Nesting by parentheses
//! and function calls is already bounded by DataFusion's parser (its recursion limit).

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Result, SqlError};

/// Tokens one statement may have.
pub const MAX_TOKENS: usize = 200_000;

/// Binary operators (arithmetic, comparison, `AND`, `OR`, `||`) one statement may have.
pub const MAX_OPERATORS: usize = 10_000;

/// How deep one expression may nest once planned.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// Refuses a statement with more than [`MAX_TOKENS`] tokens or [`MAX_OPERATORS`]
/// binary operators, before it is parsed.
pub fn check_text(stmt: &str) -> Result<()> {
    let tokens = Tokenizer::new(&GenericDialect {}, stmt)
        .tokenize()
        .map_err(|e| SqlError::Plan(format!("cannot read the statement: {e}")))?;
    let mut count = 0usize;
    let mut operators = 0usize;
    for t in &tokens {
        if matches!(t, Token::Whitespace(_)) {
            continue;
        }
        count += 1;
        let is_operator = match t {
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe => true,
            Token::Word(w) if w.quote_style.is_none() => {
                w.value.eq_ignore_ascii_case("AND") || w.value.eq_ignore_ascii_case("OR")
            }
            _ => false,
        };
        operators += is_operator as usize;
    }
    if count > MAX_TOKENS {
        return Err(SqlError::Plan(format!(
            "the statement has {count} tokens; the limit is {MAX_TOKENS}"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(SqlError::Plan(format!(
            "the statement has {operators} operators; the limit is {MAX_OPERATORS} (split \
             the expression, or compute it in a function)"
        )));
    }
    Ok(())
}

/// How deep `expr` nests (a column or literal is 1), counted without recursion.
pub fn expression_depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        // `apply_children` visits the direct children only.
        let _ = e.apply_children(|child| {
            stack.push((child, depth + 1));
            Ok(TreeNodeRecursion::Continue)
        });
    }
    deepest
}

/// Refuses an expression deeper than [`MAX_EXPRESSION_DEPTH`].
pub fn check_expression(expr: &Expr) -> Result<()> {
    let depth = expression_depth(expr);
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(SqlError::Plan(format!(
            "an expression nests {depth} deep; the limit is {MAX_EXPRESSION_DEPTH} (split \
             it, or compute it in a function)"
        )));
    }
    Ok(())
}

/// Refuses a plan with an expression deeper than [`MAX_EXPRESSION_DEPTH`], before any
/// recursive pass walks it. The plan's nodes (not its expressions) nest only as deep
/// as the parser allows.
pub fn check_plan(plan: &LogicalPlan) -> Result<()> {
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            if let Err(err) = check_expression(&e) {
                refused = Some(err);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    refused.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_chains_are_refused_by_their_text() {
        let chain = |n: usize| format!("SELECT a{} FROM t", " + 1".repeat(n));
        assert!(check_text(&chain(100)).is_ok());
        let e = check_text(&chain(MAX_OPERATORS + 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("operators"), "{e}");
        let e = check_text(&format!("SELECT {} FROM t", "a, ".repeat(MAX_TOKENS)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokens"), "{e}");
        // Operators inside string literals do not count.
        assert!(check_text(&format!("SELECT '{}'", "+".repeat(50_000))).is_ok());
    }

    #[test]
    fn depth_is_counted_without_recursion() {
        use datafusion::logical_expr::{col, lit};
        let mut e = col("a");
        for _ in 0..100_000 {
            e = e + lit(1);
        }
        assert_eq!(expression_depth(&e), 100_001);
        assert!(check_expression(&e).is_err());
        assert!(check_expression(&(col("a") + lit(1))).is_ok());
        // Dropping a deep expression recurses too: let it go on a roomy thread.
        std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn(move || drop(e))
            .unwrap()
            .join()
            .unwrap();
    }
}
