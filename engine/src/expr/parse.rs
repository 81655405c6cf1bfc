//! Parsing of SQL expression text with `sqlparser`.

use sqlparser::ast::{Expr, SelectItem};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::error::EngineError;

/// Parses one SQL expression such as `price > 100`.
pub fn parse_expr(text: &str) -> Result<Expr, EngineError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| EngineError::expr(text, e.to_string()))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| EngineError::expr(text, e.to_string()))?;
    expect_end(&mut parser, text)?;
    Ok(expr)
}

/// Parses a projection such as `price * 0.908 AS price_eur`; returns the expression and its
/// output name (the alias, the column name for a bare column, else the expression text).
pub fn parse_projection(text: &str) -> Result<(Expr, String), EngineError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| EngineError::expr(text, e.to_string()))?;
    let item = parser
        .parse_select_item()
        .map_err(|e| EngineError::expr(text, e.to_string()))?;
    expect_end(&mut parser, text)?;
    match item {
        SelectItem::ExprWithAlias { expr, alias } => Ok((expr, alias.value)),
        SelectItem::UnnamedExpr(expr) => {
            let name = match &expr {
                Expr::Identifier(ident) => ident.value.clone(),
                other => other.to_string(),
            };
            Ok((expr, name))
        }
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Err(EngineError::expr(
            text,
            "`*` is not supported in a projection; list the columns to keep",
        )),
    }
}

fn expect_end(parser: &mut Parser<'_>, text: &str) -> Result<(), EngineError> {
    let next = parser.peek_token();
    if next.token == Token::EOF {
        Ok(())
    } else {
        Err(EngineError::expr(
            text,
            format!(
                "unexpected `{}` after the end of the expression",
                next.token
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_get_names() {
        assert_eq!(
            parse_projection("price * 0.908 AS price_eur").unwrap().1,
            "price_eur"
        );
        assert_eq!(parse_projection("auction").unwrap().1, "auction");
        assert_eq!(parse_projection("upper(word)").unwrap().1, "upper(word)");
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let err = parse_expr("price > 100 100").unwrap_err().to_string();
        assert!(
            err.contains("`price > 100 100`") && err.contains("unexpected"),
            "{err}"
        );
        assert!(parse_expr("price >").is_err());
    }
}
