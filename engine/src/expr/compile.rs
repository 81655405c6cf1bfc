//! Compilation of a parsed SQL expression into a typed tree bound to an input schema.
//!
//! Compilation resolves column names to indices, checks types, and inserts casts where an int
//! meets a float, so evaluation never looks at names or decides types per record.

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType as SqlType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, UnaryOperator, Value as SqlValue,
};

use crate::error::EngineError;
use crate::expr::parse::{parse_expr, parse_projection};
use crate::record::{Column, DataType, OwnedValue, Schema};

/// A binary operator after type checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `=`
    Eq,
    /// `<>` or `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `||`
    Concat,
}

/// A built-in scalar function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `upper(string)`
    Upper,
    /// `lower(string)`
    Lower,
    /// `length(string)` in characters.
    Length,
    /// `abs(number)`
    Abs,
}

/// What a node computes.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// Reads a column of the input batch.
    Column(usize),
    /// A constant.
    Literal(OwnedValue),
    /// A binary operation.
    Binary(BinOp, Box<Node>, Box<Node>),
    /// Logical `NOT`.
    Not(Box<Node>),
    /// Arithmetic negation.
    Neg(Box<Node>),
    /// A function call.
    Func(Func, Box<Node>),
    /// A type conversion.
    Cast(Box<Node>),
}

/// A typed node with its own output buffer, reused across batches.
#[derive(Clone, Debug)]
pub struct Node {
    /// What the node computes.
    pub kind: NodeKind,
    /// The type of its result.
    pub data_type: DataType,
    /// Scratch output (unused by column nodes, which return the input column itself).
    pub out: Column,
}

impl Node {
    fn new(kind: NodeKind, data_type: DataType) -> Self {
        Self {
            kind,
            data_type,
            out: Column::new(data_type),
        }
    }
}

/// An expression compiled against a schema, ready to evaluate over batches of that schema.
#[derive(Clone, Debug)]
pub struct CompiledExpr {
    text: String,
    name: String,
    pub(crate) root: Node,
}

impl CompiledExpr {
    /// Parses and compiles `text` (e.g. `price > 100`) against `schema`.
    pub fn compile(text: &str, schema: &Schema) -> Result<Self, EngineError> {
        let expr = parse_expr(text)?;
        let root = Compiler { text, schema }.node(&expr)?;
        Ok(Self {
            text: text.to_owned(),
            name: expr.to_string(),
            root,
        })
    }

    /// Parses and compiles a projection (e.g. `price * 0.908 AS price_eur`) against `schema`.
    pub fn compile_projection(text: &str, schema: &Schema) -> Result<Self, EngineError> {
        let (expr, name) = parse_projection(text)?;
        let root = Compiler { text, schema }.node(&expr)?;
        Ok(Self {
            text: text.to_owned(),
            name,
            root,
        })
    }

    /// Compiles `text` and checks that it yields a bool.
    pub fn compile_predicate(text: &str, schema: &Schema) -> Result<Self, EngineError> {
        let compiled = Self::compile(text, schema)?;
        if compiled.data_type() != DataType::Bool {
            return Err(EngineError::expr(
                text,
                format!(
                    "a filter must be a bool expression, this one is {}",
                    compiled.data_type()
                ),
            ));
        }
        Ok(compiled)
    }

    /// Returns the result type.
    pub fn data_type(&self) -> DataType {
        self.root.data_type
    }

    /// Returns the output name (alias, column name, or expression text).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the expression text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Returns the input column index if the expression is a bare column reference.
    pub fn as_column(&self) -> Option<usize> {
        match self.root.kind {
            NodeKind::Column(i) => Some(i),
            _ => None,
        }
    }
}

struct Compiler<'a> {
    text: &'a str,
    schema: &'a Schema,
}

impl Compiler<'_> {
    fn err(&self, message: impl Into<String>) -> EngineError {
        EngineError::expr(self.text, message)
    }

    fn column(&self, name: &str) -> Result<Node, EngineError> {
        let fields = self.schema.fields();
        let index = self
            .schema
            .index_of(name)
            .or_else(|| {
                fields
                    .iter()
                    .position(|f| f.name.eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| {
                self.err(format!(
                    "unknown column `{name}`; available columns: {}",
                    self.schema
                ))
            })?;
        Ok(Node::new(NodeKind::Column(index), fields[index].data_type))
    }

    fn node(&self, expr: &Expr) -> Result<Node, EngineError> {
        match expr {
            Expr::Identifier(ident) => self.column(&ident.value),
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(last) => self.column(&last.value),
                None => Err(self.err("empty column name")),
            },
            Expr::Nested(inner) => self.node(inner),
            Expr::Value(v) => self.literal(&v.value),
            Expr::UnaryOp { op, expr } => {
                let inner = self.node(expr)?;
                match op {
                    UnaryOperator::Not if inner.data_type == DataType::Bool => {
                        Ok(Node::new(NodeKind::Not(Box::new(inner)), DataType::Bool))
                    }
                    UnaryOperator::Minus if inner.data_type.is_numeric() => {
                        let ty = inner.data_type;
                        Ok(Node::new(NodeKind::Neg(Box::new(inner)), ty))
                    }
                    UnaryOperator::Plus if inner.data_type.is_numeric() => Ok(inner),
                    _ => Err(self.err(format!("`{op}` cannot apply to {}", inner.data_type))),
                }
            }
            Expr::BinaryOp { left, op, right } => {
                self.binary(op, self.node(left)?, self.node(right)?)
            }
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr,
                data_type,
                ..
            } => {
                let target = match data_type {
                    SqlType::Float(_) | SqlType::Double(_) | SqlType::DoublePrecision => {
                        DataType::Float
                    }
                    SqlType::Int(_) | SqlType::Integer(_) | SqlType::BigInt(_) => DataType::Int,
                    other => {
                        return Err(self.err(format!(
                            "cannot cast to {other}; supported targets are DOUBLE and BIGINT"
                        )))
                    }
                };
                let inner = self.node(expr)?;
                if !inner.data_type.is_numeric() {
                    return Err(self.err(format!("cannot cast {} to {target}", inner.data_type)));
                }
                Ok(cast(inner, target))
            }
            Expr::Function(f)
                if matches!(f.args, FunctionArguments::None)
                    && self.schema.index_of(&f.name.to_string()).is_some() =>
            {
                // Keywords such as `user` parse as argument-less functions; a column of that
                // name is what the user meant.
                self.column(&f.name.to_string())
            }
            Expr::Function(f) => {
                let name = f.name.to_string().to_ascii_lowercase();
                let func = match name.as_str() {
                    "upper" => Func::Upper,
                    "lower" => Func::Lower,
                    "length" | "char_length" => Func::Length,
                    "abs" => Func::Abs,
                    other => {
                        return Err(self.err(format!(
                            "unknown function `{other}`; known: upper, lower, length, abs"
                        )))
                    }
                };
                let arg = match &f.args {
                    FunctionArguments::List(list) if list.args.len() == 1 => match &list.args[0] {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => self.node(e)?,
                        _ => return Err(self.err(format!("`{name}` takes one plain argument"))),
                    },
                    _ => return Err(self.err(format!("`{name}` takes exactly one argument"))),
                };
                let ty = match (func, arg.data_type) {
                    (Func::Upper | Func::Lower, DataType::String) => DataType::String,
                    (Func::Length, DataType::String) => DataType::Int,
                    (Func::Abs, t) if t.is_numeric() => t,
                    (_, t) => return Err(self.err(format!("`{name}` cannot apply to {t}"))),
                };
                Ok(Node::new(NodeKind::Func(func, Box::new(arg)), ty))
            }
            other => Err(self.err(format!("unsupported expression `{other}`"))),
        }
    }

    fn literal(&self, value: &SqlValue) -> Result<Node, EngineError> {
        let value = match value {
            SqlValue::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => OwnedValue::Int(i),
                Err(_) => OwnedValue::Float(
                    n.parse::<f64>()
                        .map_err(|_| self.err(format!("bad number `{n}`")))?,
                ),
            },
            SqlValue::SingleQuotedString(s) => OwnedValue::Str(s.clone()),
            SqlValue::Boolean(b) => OwnedValue::Bool(*b),
            other => return Err(self.err(format!("unsupported literal `{other}`"))),
        };
        let ty = value.as_value().data_type();
        Ok(Node::new(NodeKind::Literal(value), ty))
    }

    fn binary(&self, op: &BinaryOperator, l: Node, r: Node) -> Result<Node, EngineError> {
        use DataType as T;
        let op = match op {
            BinaryOperator::Plus => BinOp::Add,
            BinaryOperator::Minus => BinOp::Sub,
            BinaryOperator::Multiply => BinOp::Mul,
            BinaryOperator::Divide => BinOp::Div,
            BinaryOperator::Modulo => BinOp::Mod,
            BinaryOperator::Eq => BinOp::Eq,
            BinaryOperator::NotEq => BinOp::NotEq,
            BinaryOperator::Lt => BinOp::Lt,
            BinaryOperator::LtEq => BinOp::LtEq,
            BinaryOperator::Gt => BinOp::Gt,
            BinaryOperator::GtEq => BinOp::GtEq,
            BinaryOperator::And => BinOp::And,
            BinaryOperator::Or => BinOp::Or,
            BinaryOperator::StringConcat => BinOp::Concat,
            other => return Err(self.err(format!("unsupported operator `{other}`"))),
        };
        let (lt, rt) = (l.data_type, r.data_type);
        let mismatch = || self.err(format!("`{op:?}` cannot combine {lt} and {rt}"));
        let (l, r, ty) = match op {
            BinOp::And | BinOp::Or if lt == T::Bool && rt == T::Bool => (l, r, T::Bool),
            BinOp::Concat if lt == T::String && rt == T::String => (l, r, T::String),
            BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => {
                match (lt, rt) {
                    (T::Bool, T::Bool) | (T::String, T::String) => (l, r, T::Bool),
                    _ if lt.is_numeric() && rt.is_numeric() => {
                        let (l, r, _) = promote(l, r);
                        (l, r, T::Bool)
                    }
                    _ => return Err(mismatch()),
                }
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod
                if lt.is_numeric() && rt.is_numeric() =>
            {
                let (l, r, ty) = promote(l, r);
                let ty = match (op, lt, rt) {
                    (BinOp::Sub, T::Timestamp, T::Timestamp) => T::Int,
                    (BinOp::Add | BinOp::Sub, T::Timestamp, T::Int)
                    | (BinOp::Add, T::Int, T::Timestamp) => T::Timestamp,
                    (_, T::Timestamp, _) | (_, _, T::Timestamp) if ty != T::Float => T::Int,
                    _ => ty,
                };
                (l, r, ty)
            }
            _ => return Err(mismatch()),
        };
        Ok(Node::new(
            NodeKind::Binary(op, Box::new(l), Box::new(r)),
            ty,
        ))
    }
}

/// Casts whichever side is integral to float when the other side is float.
fn promote(l: Node, r: Node) -> (Node, Node, DataType) {
    match (l.data_type, r.data_type) {
        (DataType::Float, DataType::Float) => (l, r, DataType::Float),
        (DataType::Float, _) => (l, cast(r, DataType::Float), DataType::Float),
        (_, DataType::Float) => (cast(l, DataType::Float), r, DataType::Float),
        _ => (l, r, DataType::Int),
    }
}

fn cast(node: Node, target: DataType) -> Node {
    if node.data_type == target {
        return node;
    }
    Node::new(NodeKind::Cast(Box::new(node)), target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> crate::record::SchemaRef {
        Schema::of(&[
            ("auction", DataType::Int),
            ("price", DataType::Int),
            ("word", DataType::String),
            ("ts", DataType::Timestamp),
        ])
        .unwrap()
    }

    #[test]
    fn types_are_inferred() {
        let s = schema();
        assert_eq!(
            CompiledExpr::compile("price > 100", &s)
                .unwrap()
                .data_type(),
            DataType::Bool
        );
        let eur = CompiledExpr::compile_projection("price * 0.908 AS price_eur", &s).unwrap();
        assert_eq!(
            (eur.data_type(), eur.name()),
            (DataType::Float, "price_eur")
        );
        let m = CompiledExpr::compile("auction % 123 = 0", &s).unwrap();
        assert_eq!(m.data_type(), DataType::Bool);
        assert_eq!(
            CompiledExpr::compile("upper(word)", &s)
                .unwrap()
                .data_type(),
            DataType::String
        );
        assert_eq!(
            CompiledExpr::compile("ts + 5", &s).unwrap().data_type(),
            DataType::Timestamp
        );
        let user = Schema::of(&[("user", DataType::Int)]).unwrap();
        assert_eq!(
            CompiledExpr::compile("user", &user).unwrap().as_column(),
            Some(0)
        );
    }

    #[test]
    fn errors_name_the_expression_and_column() {
        let s = schema();
        let err = CompiledExpr::compile("pricee > 100", &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`pricee > 100`") && err.contains("unknown column `pricee`"),
            "{err}"
        );
        let err = CompiledExpr::compile("word + 1", &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot combine string and int"), "{err}");
        let err = CompiledExpr::compile_predicate("price + 1", &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a bool"), "{err}");
        let err = CompiledExpr::compile("nope(word)", &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown function `nope`"), "{err}");
    }
}
