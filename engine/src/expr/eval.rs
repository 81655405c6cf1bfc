//! Vectorized evaluation of compiled expressions: one pass per node over a whole batch.
//!
//! HOT PATH: every node writes into its own output buffer, cleared and reused for each batch;
//! there is no per-record allocation, locking or logging. Integer arithmetic wraps, and integer
//! division or remainder by zero yields 0 (the record model has no nulls); floats follow IEEE.

use crate::expr::compile::{BinOp, CompiledExpr, Func, Node, NodeKind};
use crate::record::{Batch, Column, OwnedValue};

impl CompiledExpr {
    /// Evaluates the expression over every row of `batch`, whose schema must be the one the
    /// expression was compiled against. The result has one value per row.
    pub fn eval<'a>(&'a mut self, batch: &'a Batch) -> &'a Column {
        eval_node(&mut self.root, batch)
    }
}

fn eval_node<'a>(node: &'a mut Node, batch: &'a Batch) -> &'a Column {
    let Node { kind, out, .. } = node;
    let n = batch.len();
    out.clear();
    match kind {
        NodeKind::Column(i) => return batch.column(*i),
        NodeKind::Literal(value) => fill(out, value, n),
        NodeKind::Binary(op, l, r) => {
            let l = eval_node(l, batch);
            let r = eval_node(r, batch);
            binary(*op, l, r, out);
        }
        NodeKind::Not(inner) => {
            if let (Column::Bool(o), Column::Bool(v)) = (&mut *out, eval_node(inner, batch)) {
                o.extend(v.iter().map(|b| !b));
            }
        }
        NodeKind::Neg(inner) => match (&mut *out, eval_node(inner, batch)) {
            (Column::Int(o) | Column::Timestamp(o), Column::Int(v) | Column::Timestamp(v)) => {
                o.extend(v.iter().map(|x| x.wrapping_neg()));
            }
            (Column::Float(o), Column::Float(v)) => o.extend(v.iter().map(|x| -x)),
            _ => {}
        },
        NodeKind::Cast(inner) => match (&mut *out, eval_node(inner, batch)) {
            (Column::Float(o), Column::Int(v) | Column::Timestamp(v)) => {
                o.extend(v.iter().map(|x| *x as f64));
            }
            (Column::Int(o), Column::Float(v)) => o.extend(v.iter().map(|x| *x as i64)),
            (Column::Int(o), Column::Timestamp(v)) => o.extend_from_slice(v),
            _ => {}
        },
        NodeKind::Func(func, inner) => func_eval(*func, eval_node(inner, batch), out),
    }
    debug_assert_eq!(out.len(), n, "expression node produced a wrong row count");
    out
}

fn fill(out: &mut Column, value: &OwnedValue, n: usize) {
    match (out, value) {
        (Column::Int(o), OwnedValue::Int(v)) | (Column::Timestamp(o), OwnedValue::Timestamp(v)) => {
            o.resize(n, *v);
        }
        (Column::Float(o), OwnedValue::Float(v)) => o.resize(n, *v),
        (Column::Bool(o), OwnedValue::Bool(v)) => o.resize(n, *v),
        (Column::Str(o), OwnedValue::Str(v)) => {
            for _ in 0..n {
                o.push(v);
            }
        }
        _ => {}
    }
}

fn func_eval(func: Func, input: &Column, out: &mut Column) {
    match (func, input, out) {
        (Func::Upper | Func::Lower, Column::Str(v), Column::Str(o)) => {
            for i in 0..v.len() {
                let buf = o.buffer();
                for c in v.get(i).chars() {
                    if func == Func::Upper {
                        buf.extend(c.to_uppercase());
                    } else {
                        buf.extend(c.to_lowercase());
                    }
                }
                o.finish();
            }
        }
        (Func::Length, Column::Str(v), Column::Int(o)) => {
            o.extend((0..v.len()).map(|i| v.get(i).chars().count() as i64));
        }
        (Func::Abs, Column::Int(v), Column::Int(o))
        | (Func::Abs, Column::Timestamp(v), Column::Timestamp(o)) => {
            o.extend(v.iter().map(|x| x.wrapping_abs()));
        }
        (Func::Abs, Column::Float(v), Column::Float(o)) => o.extend(v.iter().map(|x| x.abs())),
        _ => {}
    }
}

fn int_op(op: BinOp, a: i64, b: i64) -> i64 {
    match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::Div => a.checked_div(b).unwrap_or(0),
        BinOp::Mod => a.checked_rem(b).unwrap_or(0),
        _ => 0,
    }
}

fn float_op(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        _ => 0.0,
    }
}

fn compare<T: PartialOrd>(op: BinOp, a: T, b: T) -> bool {
    match op {
        BinOp::Eq => a == b,
        BinOp::NotEq => a != b,
        BinOp::Lt => a < b,
        BinOp::LtEq => a <= b,
        BinOp::Gt => a > b,
        BinOp::GtEq => a >= b,
        _ => false,
    }
}

fn is_comparison(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq
    )
}

fn binary(op: BinOp, l: &Column, r: &Column, out: &mut Column) {
    use Column as C;
    match (l, r, out) {
        (C::Int(a) | C::Timestamp(a), C::Int(b) | C::Timestamp(b), C::Bool(o)) => {
            o.extend(a.iter().zip(b).map(|(x, y)| compare(op, x, y)));
        }
        (C::Int(a) | C::Timestamp(a), C::Int(b) | C::Timestamp(b), C::Int(o) | C::Timestamp(o)) => {
            o.extend(a.iter().zip(b).map(|(x, y)| int_op(op, *x, *y)));
        }
        (C::Float(a), C::Float(b), C::Bool(o)) => {
            o.extend(a.iter().zip(b).map(|(x, y)| compare(op, x, y)));
        }
        (C::Float(a), C::Float(b), C::Float(o)) => {
            o.extend(a.iter().zip(b).map(|(x, y)| float_op(op, *x, *y)));
        }
        (C::Bool(a), C::Bool(b), C::Bool(o)) => {
            o.extend(a.iter().zip(b).map(|(x, y)| match op {
                BinOp::And => *x && *y,
                BinOp::Or => *x || *y,
                _ => compare(op, x, y),
            }));
        }
        (C::Str(a), C::Str(b), C::Bool(o)) if is_comparison(op) => {
            o.extend((0..a.len()).map(|i| compare(op, a.get(i), b.get(i))));
        }
        (C::Str(a), C::Str(b), C::Str(o)) => {
            for i in 0..a.len() {
                let buf = o.buffer();
                buf.push_str(a.get(i));
                buf.push_str(b.get(i));
                o.finish();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema, Value};

    fn batch() -> Batch {
        let schema = Schema::of(&[
            ("auction", DataType::Int),
            ("price", DataType::Int),
            ("word", DataType::String),
        ])
        .unwrap();
        let mut b = Batch::new(schema);
        for (a, p, w) in [(0, 50, "a"), (123, 150, "Bc"), (246, 0, "dÉ")] {
            b.push_row(&[Value::Int(a), Value::Int(p), Value::Str(w)])
                .unwrap();
        }
        b
    }

    fn eval(text: &str) -> Vec<OwnedValue> {
        let b = batch();
        let mut e = CompiledExpr::compile_projection(text, b.schema()).unwrap();
        let col = e.eval(&b);
        (0..col.len())
            .map(|i| col.get(i).to_owned_value())
            .collect()
    }

    #[test]
    fn arithmetic_and_comparisons() {
        use OwnedValue::{Bool, Float, Int, Str};
        assert_eq!(eval("price > 100"), [Bool(false), Bool(true), Bool(false)]);
        assert_eq!(
            eval("price * 0.5 AS half"),
            [Float(25.0), Float(75.0), Float(0.0)]
        );
        assert_eq!(
            eval("auction % 123 = 0"),
            [Bool(true), Bool(true), Bool(true)]
        );
        assert_eq!(
            eval("upper(word)"),
            [Str("A".into()), Str("BC".into()), Str("DÉ".into())]
        );
        assert_eq!(eval("length(word) + 1"), [Int(2), Int(3), Int(3)]);
        assert_eq!(eval("100 / price"), [Int(2), Int(0), Int(0)]);
        assert_eq!(
            eval("NOT (price > 0 AND word <> 'a')"),
            [Bool(true), Bool(false), Bool(true)]
        );
        assert_eq!(eval("-price"), [Int(-50), Int(-150), Int(0)]);
        assert_eq!(
            eval("word || '!'"),
            [Str("a!".into()), Str("Bc!".into()), Str("dÉ!".into())]
        );
    }

    #[test]
    fn evaluation_reuses_buffers_across_batches() {
        let b = batch();
        let mut e = CompiledExpr::compile("price + 1", b.schema()).unwrap();
        assert_eq!(e.eval(&b).len(), 3);
        assert_eq!(e.eval(&b).get(2), Value::Int(1));
    }
}
