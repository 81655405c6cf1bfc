//! Aggregate functions (count, sum, min, max, avg, first, last) and their accumulators,
//! shared by the aggregate and window operators.
//!
//! HOT PATH: `update` runs per record; it does not allocate except to copy the first string
//! a `first`/`last`/`min`/`max` accumulator keeps (later strings reuse that buffer).

use serde::{Deserialize, Serialize};
use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};

use crate::error::EngineError;
use crate::expr::parse::parse_projection;
use crate::record::{Batch, Column, DataType, Field, OwnedValue, SchemaRef, Value};
use crate::state::KeyedState;

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFn {
    /// Number of records.
    Count,
    /// Sum of a numeric column.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean of a numeric column, as a float.
    Avg,
    /// First value in arrival order.
    First,
    /// Last value in arrival order.
    Last,
}

/// One aggregate of an aggregation: function, input column and output field.
#[derive(Clone, Debug)]
pub struct AggSpec {
    func: AggFn,
    column: Option<usize>,
    field: Field,
}

/// What a checkpoint records of an aggregate, to refuse a state written for another one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggSignature {
    func: AggFn,
    column: Option<usize>,
    field: Field,
}

/// The running state of one aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    /// A count.
    Count(i64),
    /// An int sum, min or max.
    Int(Option<i64>),
    /// A float sum, min or max.
    Float(Option<f64>),
    /// Sum and count for an average.
    Avg(f64, i64),
    /// A kept value (first, last, string min or max).
    Val(Option<OwnedValue>),
}

impl Acc {
    /// Approximately how many bytes of memory the accumulator takes.
    pub fn state_bytes(&self) -> u64 {
        match self {
            Self::Val(Some(v)) => v.state_bytes(),
            _ => std::mem::size_of::<Self>() as u64,
        }
    }
}

/// Returns whether a column of type `t` takes `v` (see [`Column::push`]).
fn accepts(t: DataType, v: &OwnedValue) -> bool {
    matches!(
        (t, v),
        (
            DataType::Int | DataType::Timestamp,
            OwnedValue::Int(_) | OwnedValue::Timestamp(_)
        ) | (DataType::Float, OwnedValue::Float(_) | OwnedValue::Int(_))
            | (DataType::Bool, OwnedValue::Bool(_))
            | (DataType::String, OwnedValue::Str(_))
    )
}

fn assign(slot: &mut Option<OwnedValue>, v: Value<'_>) {
    match (slot.as_mut(), v) {
        (Some(OwnedValue::Str(s)), Value::Str(new)) => {
            s.clear();
            s.push_str(new);
        }
        _ => *slot = Some(v.to_owned_value()),
    }
}

impl AggSpec {
    /// Parses `count(*) AS n`, `sum(price)`, `max(price) AS top`, ... against `input`.
    pub fn parse(text: &str, input: &SchemaRef) -> Result<Self, EngineError> {
        let err = |m: String| EngineError::expr(text, m);
        let (expr, name) = parse_projection(text)?;
        let Expr::Function(f) = &expr else {
            return Err(err(
                "expected an aggregate call such as `count(*)` or `sum(price)`".into(),
            ));
        };
        let fname = f.name.to_string().to_ascii_lowercase();
        let func = match fname.as_str() {
            "count" => AggFn::Count,
            "sum" => AggFn::Sum,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "avg" => AggFn::Avg,
            "first" | "first_value" => AggFn::First,
            "last" | "last_value" => AggFn::Last,
            other => {
                return Err(err(format!(
                    "unknown aggregate `{other}`; known: count, sum, min, max, avg, first, last"
                )))
            }
        };
        let arg = match &f.args {
            FunctionArguments::List(list) if list.args.len() == 1 => &list.args[0],
            _ => return Err(err(format!("`{fname}` takes exactly one argument"))),
        };
        let column = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if func == AggFn::Count => None,
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(id))) => {
                Some(input.index_of(&id.value).ok_or_else(|| {
                    err(format!(
                        "unknown column `{}`; available columns: {input}",
                        id.value
                    ))
                })?)
            }
            _ => {
                return Err(err(format!(
                    "`{fname}` takes a column name (or `*` for count)"
                )))
            }
        };
        let in_type = column.map(|c| input.fields()[c].data_type);
        let out_type = match (func, in_type) {
            (AggFn::Count, _) => DataType::Int,
            (AggFn::Avg, Some(t)) if t.is_numeric() => DataType::Float,
            (AggFn::Sum, Some(t)) if t.is_numeric() => t,
            (AggFn::Min | AggFn::Max, Some(t)) if t != DataType::Bool => t,
            (AggFn::First | AggFn::Last, Some(t)) => t,
            (_, t) => {
                let t = t.map_or("no column".to_owned(), |t| t.to_string());
                return Err(err(format!("`{fname}` cannot aggregate {t}")));
            }
        };
        Ok(Self {
            func,
            column,
            field: Field::new(name, out_type),
        })
    }

    /// Returns the output field.
    pub fn field(&self) -> &Field {
        &self.field
    }

    /// Returns what a checkpoint records of this aggregate.
    pub fn signature(&self) -> AggSignature {
        AggSignature {
            func: self.func,
            column: self.column,
            field: self.field.clone(),
        }
    }

    /// Checks that `acc` (read from a checkpoint) is a state this aggregate can have: the
    /// kind [`Self::init`] makes, and a kept value of the output type. Returns what is wrong.
    pub fn check(&self, acc: &Acc) -> Result<(), String> {
        let fresh = self.init();
        let what = || format!("aggregate `{}`", self.field.name);
        if std::mem::discriminant(acc) != std::mem::discriminant(&fresh) {
            return Err(format!(
                "{} has state {acc:?}, expected a state like {fresh:?}",
                what()
            ));
        }
        match acc {
            Acc::Val(Some(v)) if !accepts(self.field.data_type, v) => Err(format!(
                "{} keeps {v:?}, which is not of type {}",
                what(),
                self.field.data_type
            )),
            // Every kept-value state holds a value once a record updated it, and only updated
            // states are kept.
            Acc::Val(None) => Err(format!("{} keeps no value", what())),
            _ => Ok(()),
        }
    }

    /// Returns a fresh accumulator.
    pub fn init(&self) -> Acc {
        match (self.func, self.field.data_type) {
            (AggFn::Count, _) => Acc::Count(0),
            (AggFn::Avg, _) => Acc::Avg(0.0, 0),
            (AggFn::Sum | AggFn::Min | AggFn::Max, DataType::Int | DataType::Timestamp) => {
                Acc::Int(None)
            }
            (AggFn::Sum | AggFn::Min | AggFn::Max, DataType::Float) => Acc::Float(None),
            _ => Acc::Val(None),
        }
    }

    /// Adds row `row` of `batch` to `acc`.
    pub fn update(&self, acc: &mut Acc, batch: &Batch, row: usize) {
        let v = match self.column {
            Some(c) => batch.value(row, c),
            None => Value::Int(0),
        };
        self.add(acc, v);
    }

    /// Adds rows `rows` of `batch` to keyed accumulators: row `r` goes to value `offset` of
    /// slot `slots[r]`. Works column by column, so the common cases (count, and sum/min/max
    /// of ints) run without a type dispatch per value.
    pub fn update_rows(
        &self,
        accs: &mut KeyedState<Acc>,
        offset: usize,
        batch: &Batch,
        rows: std::ops::Range<usize>,
        slots: &[u32],
    ) {
        match (self.func, self.column.map(|c| batch.column(c))) {
            (AggFn::Count, _) => accs.update_rows(offset, slots, rows, |_, acc| {
                if let Acc::Count(n) = acc {
                    *n += 1;
                }
            }),
            (
                AggFn::Sum | AggFn::Min | AggFn::Max,
                Some(Column::Int(values) | Column::Timestamp(values)),
            ) => accs.update_rows(offset, slots, rows, |r, acc| {
                let x = values[r];
                match acc {
                    Acc::Int(slot) => {
                        *slot = Some(match (*slot, self.func) {
                            (None, _) => x,
                            (Some(a), AggFn::Sum) => a.wrapping_add(x),
                            (Some(a), AggFn::Min) => a.min(x),
                            (Some(a), _) => a.max(x),
                        });
                    }
                    acc => self.add(acc, Value::Int(x)),
                }
            }),
            _ => accs.update_rows(offset, slots, rows, |r, acc| self.update(acc, batch, r)),
        }
    }

    fn add(&self, acc: &mut Acc, v: Value<'_>) {
        match (acc, v) {
            (Acc::Count(n), _) => *n += 1,
            (Acc::Avg(s, n), v) => {
                *s += v.as_f64().unwrap_or(0.0);
                *n += 1;
            }
            (Acc::Int(slot), Value::Int(x) | Value::Timestamp(x)) => {
                *slot = Some(match (*slot, self.func) {
                    (None, _) => x,
                    (Some(a), AggFn::Sum) => a.wrapping_add(x),
                    (Some(a), AggFn::Min) => a.min(x),
                    (Some(a), _) => a.max(x),
                });
            }
            (Acc::Float(slot), Value::Float(x)) => {
                *slot = Some(match (*slot, self.func) {
                    (None, _) => x,
                    (Some(a), AggFn::Sum) => a + x,
                    (Some(a), AggFn::Min) => a.min(x),
                    (Some(a), _) => a.max(x),
                });
            }
            (Acc::Val(slot), v) => {
                let replace = match (self.func, slot.as_ref()) {
                    (_, None) | (AggFn::Last, _) => true,
                    (AggFn::Min, Some(old)) => less(v, old.as_value()),
                    (AggFn::Max, Some(old)) => less(old.as_value(), v),
                    _ => false,
                };
                if replace {
                    assign(slot, v);
                }
            }
            _ => {}
        }
    }

    /// Folds `later` (the state of a later stretch of records) into `acc`.
    pub fn merge(&self, acc: &mut Acc, later: &Acc) {
        match (acc, later) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Avg(s, n), Acc::Avg(s2, n2)) => {
                *s += s2;
                *n += n2;
            }
            (acc @ (Acc::Int(_) | Acc::Float(_)), Acc::Int(Some(x))) => {
                self.add(acc, Value::Int(*x))
            }
            (acc, Acc::Float(Some(x))) => self.add(acc, Value::Float(*x)),
            (acc, Acc::Val(Some(v))) => self.add(acc, v.as_value()),
            _ => {}
        }
    }

    /// Appends the result of `acc` to `column`.
    pub fn emit(&self, acc: &Acc, column: &mut Column) {
        let pushed = match acc {
            Acc::Count(n) => column.push(Value::Int(*n)),
            Acc::Avg(s, n) => column.push(Value::Float(if *n == 0 { 0.0 } else { s / *n as f64 })),
            Acc::Int(v) => column.push(Value::Int(v.unwrap_or(0))),
            Acc::Float(v) => column.push(Value::Float(v.unwrap_or(0.0))),
            Acc::Val(Some(v)) => column.push(v.as_value()),
            Acc::Val(None) => false,
        };
        debug_assert!(pushed, "aggregate emitted a value of the wrong type");
    }
}

fn less(a: Value<'_>, b: Value<'_>) -> bool {
    match (a, b) {
        (Value::Str(a), Value::Str(b)) => a < b,
        (a, b) => a.as_f64() < b.as_f64(),
    }
}

/// Parses every aggregate of a list.
pub fn parse_aggs(
    texts: &[impl AsRef<str>],
    input: &SchemaRef,
) -> Result<Vec<AggSpec>, EngineError> {
    if texts.is_empty() {
        return Err(EngineError::Plan(
            "an aggregation needs at least one aggregate".into(),
        ));
    }
    texts
        .iter()
        .map(|t| AggSpec::parse(t.as_ref(), input))
        .collect()
}

/// Returns fresh accumulators for `aggs`.
pub fn init_all(aggs: &[AggSpec]) -> Vec<Acc> {
    aggs.iter().map(AggSpec::init).collect()
}

/// Returns what a checkpoint records of `aggs`.
pub fn signatures(aggs: &[AggSpec]) -> Vec<AggSignature> {
    aggs.iter().map(AggSpec::signature).collect()
}

/// Checks accumulators read from a checkpoint: `accs` holds whole groups of one state per
/// aggregate, each one [`AggSpec::check`] accepts. Returns what is wrong.
pub fn check_all(aggs: &[AggSpec], accs: &[Acc]) -> Result<(), String> {
    if aggs.is_empty() || !accs.len().is_multiple_of(aggs.len()) {
        return Err(format!(
            "{} aggregate states do not make whole groups of {}",
            accs.len(),
            aggs.len()
        ));
    }
    for (i, acc) in accs.iter().enumerate() {
        aggs[i % aggs.len()].check(acc)?;
    }
    Ok(())
}

/// Adds row `row` of `batch` to every accumulator.
pub fn update_all(aggs: &[AggSpec], accs: &mut [Acc], batch: &Batch, row: usize) {
    for (spec, acc) in aggs.iter().zip(accs) {
        spec.update(acc, batch, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::Schema;

    #[test]
    fn every_function_aggregates() {
        let schema = Schema::of(&[("p", DataType::Int), ("s", DataType::String)]).unwrap();
        let b = batch(
            &schema,
            &[
                vec![Value::Int(3), Value::Str("b")],
                vec![Value::Int(1), Value::Str("c")],
                vec![Value::Int(8), Value::Str("a")],
            ],
        );
        let texts = [
            "count(*) AS n",
            "sum(p)",
            "min(p)",
            "max(p)",
            "avg(p)",
            "first(s)",
            "last(s)",
            "min(s) AS ms",
        ];
        let aggs = parse_aggs(&texts, &schema).unwrap();
        let mut accs = init_all(&aggs);
        for row in 0..b.len() {
            update_all(&aggs, &mut accs, &b, row);
        }
        let got: Vec<_> = aggs
            .iter()
            .zip(&accs)
            .map(|(a, acc)| {
                let mut c = Column::new(a.field().data_type);
                a.emit(acc, &mut c);
                c.get(0).to_owned_value()
            })
            .collect();
        use OwnedValue::{Float, Int, Str};
        assert_eq!(
            got,
            [
                Int(3),
                Int(12),
                Int(1),
                Int(8),
                Float(4.0),
                Str("b".into()),
                Str("a".into()),
                Str("a".into())
            ]
        );
        assert_eq!(aggs[0].field().name, "n");
    }

    #[test]
    fn bad_aggregates_are_rejected() {
        let schema = Schema::of(&[("s", DataType::String)]).unwrap();
        assert!(AggSpec::parse("sum(s)", &schema)
            .unwrap_err()
            .to_string()
            .contains("cannot"));
        assert!(AggSpec::parse("median(s)", &schema).is_err());
        assert!(AggSpec::parse("sum(nope)", &schema)
            .unwrap_err()
            .to_string()
            .contains("nope"));
        assert!(AggSpec::parse("s", &schema).is_err());
    }

    #[test]
    fn column_updates_match_row_updates() {
        let schema = Schema::of(&[("p", DataType::Int), ("s", DataType::String)]).unwrap();
        let b = batch(
            &schema,
            &[
                vec![Value::Int(3), Value::Str("b")],
                vec![Value::Int(-1), Value::Str("c")],
                vec![Value::Int(8), Value::Str("a")],
                vec![Value::Int(5), Value::Str("d")],
            ],
        );
        let texts = [
            "count(*)", "sum(p)", "min(p)", "max(p)", "avg(p)", "last(s)",
        ];
        let aggs = parse_aggs(&texts, &schema).unwrap();
        // Rows 0 and 2 go to group 1, rows 1 and 3 to group 0; row 0 is left out.
        let slots = [1u32, 0, 1, 0];
        let mut keyed = KeyedState::new(DataType::Int, aggs.len());
        for k in 0..2 {
            keyed.entry(Value::Int(k), |j| aggs[j].init()).unwrap();
        }
        for (j, spec) in aggs.iter().enumerate() {
            spec.update_rows(&mut keyed, j, &b, 1..4, &slots);
        }
        let mut by_row: Vec<Vec<Acc>> = (0..2).map(|_| init_all(&aggs)).collect();
        for row in 1..4 {
            update_all(&aggs, &mut by_row[slots[row] as usize], &b, row);
        }
        assert_eq!([keyed.values(0), keyed.values(1)].concat(), by_row.concat());
    }

    #[test]
    fn states_of_another_aggregate_are_refused() {
        let schema = Schema::of(&[("p", DataType::Int), ("s", DataType::String)]).unwrap();
        let aggs = parse_aggs(&["count(*) AS n", "last(s) AS l"], &schema).unwrap();
        let good = [Acc::Count(2), Acc::Val(Some(OwnedValue::Str("x".into())))];
        assert_eq!(check_all(&aggs, &good), Ok(()));
        assert!(check_all(&aggs, &good[..1])
            .unwrap_err()
            .contains("whole groups"));
        let err = check_all(&aggs, &[Acc::Int(Some(2)), good[1].clone()]).unwrap_err();
        assert!(err.contains("`n`"), "{err}");
        let err = check_all(&aggs, &[Acc::Count(1), Acc::Val(Some(OwnedValue::Int(1)))]);
        assert!(err.unwrap_err().contains("not of type string"));
        assert!(check_all(&aggs, &[Acc::Count(1), Acc::Val(None)]).is_err());
        assert_ne!(aggs[0].signature(), aggs[1].signature());
    }

    #[test]
    fn merge_combines_stretches() {
        let schema = Schema::of(&[("p", DataType::Int)]).unwrap();
        let max = AggSpec::parse("max(p)", &schema).unwrap();
        let mut a = Acc::Int(Some(3));
        max.merge(&mut a, &Acc::Int(Some(9)));
        assert_eq!(a, Acc::Int(Some(9)));
        let count = AggSpec::parse("count(*)", &schema).unwrap();
        let mut c = Acc::Count(2);
        count.merge(&mut c, &Acc::Count(5));
        assert_eq!(c, Acc::Count(7));
    }
}
