//! Comparisons of a time column with constants, read from a query's filters. One reading for
//! every table that narrows what it reads by time: the lake's hourly tables turn them into
//! `dt`/`hour` bounds ([`super::catalog::hour_bounds`]), the live views into the range they ask
//! the metadata store for.

use datafusion::{
    arrow::datatypes::{DataType, TimeUnit},
    common::ScalarValue,
    logical_expr::{
        BinaryExpr, Expr, Operator, TableProviderFilterPushDown, utils::split_conjunction,
    },
};

/// A bound on the column: `column op micros`, where `op` is one of `<`, `<=`, `=`, `>=`, `>`
/// and `micros` is microseconds since the epoch (UTC).
pub(super) type TimeComparison = (Operator, i64);

/// Every comparison of `column` with a constant among the conjuncts of `filters`, the column
/// on the left. `BETWEEN` gives two; `<>`, `NOT BETWEEN` and disjunctions give none.
pub(super) fn time_comparisons(column: &str, filters: &[Expr]) -> Vec<TimeComparison> {
    let mut found = Vec::new();
    for filter in filters {
        for conjunct in split_conjunction(filter) {
            match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    let (op, value) = if column_name(left) == Some(column) {
                        (*op, right.as_ref())
                    } else if column_name(right) == Some(column) {
                        match op.swap() {
                            Some(op) => (op, left.as_ref()),
                            None => continue,
                        }
                    } else {
                        continue;
                    };
                    let ordered = matches!(
                        op,
                        Operator::Lt
                            | Operator::LtEq
                            | Operator::Eq
                            | Operator::GtEq
                            | Operator::Gt
                    );
                    if let (true, Some(v)) = (ordered, micros(value)) {
                        found.push((op, v));
                    }
                }
                Expr::Between(between)
                    if !between.negated && column_name(&between.expr) == Some(column) =>
                {
                    found.extend(micros(&between.low).map(|v| (Operator::GtEq, v)));
                    found.extend(micros(&between.high).map(|v| (Operator::LtEq, v)));
                }
                _ => {}
            }
        }
    }
    found
}

/// `[since, until)` in microseconds that the comparisons allow; `None` where unbounded.
pub(super) fn time_range(comparisons: &[TimeComparison]) -> (Option<i64>, Option<i64>) {
    let (mut since, mut until): (Option<i64>, Option<i64>) = (None, None);
    let mut lower = |v: i64| since = Some(since.map_or(v, |s| s.max(v)));
    let mut upper = |v: i64| until = Some(until.map_or(v, |u| u.min(v)));
    for &(op, v) in comparisons {
        match op {
            Operator::Gt => lower(v.saturating_add(1)),
            Operator::GtEq => lower(v),
            Operator::Lt => upper(v),
            Operator::LtEq => upper(v.saturating_add(1)),
            Operator::Eq => {
                lower(v);
                upper(v.saturating_add(1));
            }
            _ => {}
        }
    }
    (since, until)
}

/// How a table that reads less for some filters, but still lets them all run above it, answers
/// `supports_filters_pushdown`: `Inexact` for the filters it uses, so the scan sees them.
pub(super) fn used_if(used: bool) -> TableProviderFilterPushDown {
    if used {
        TableProviderFilterPushDown::Inexact
    } else {
        TableProviderFilterPushDown::Unsupported
    }
}

/// The column an expression is, also through casts to a timestamp type as fine as the
/// columns' microseconds (which change no value; the columns are UTC). A cast to seconds or
/// milliseconds is not the column: `CAST(t AS TIMESTAMP(0)) <= x` holds for times up to a second
/// past `x`. Nor is a cast to a date or a string: its comparisons say nothing simple about time.
fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(cast)
            if matches!(
                cast.field.data_type(),
                DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
            ) =>
        {
            column_name(&cast.expr)
        }
        _ => None,
    }
}

/// A constant timestamp, in microseconds since the epoch (UTC).
fn micros(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    match value.cast_to(&utc).ok()? {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn at(v: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn both_sides_and_between_give_the_same_range() {
        let forward = col("t").gt_eq(at(10)).and(col("t").lt(at(20)));
        let swapped = at(10).lt_eq(col("t")).and(at(20).gt(col("t")));
        let between = col("t").between(at(10), at(19));
        for filter in [forward, swapped, between] {
            let found = time_comparisons("t", std::slice::from_ref(&filter));
            assert_eq!(time_range(&found), (Some(10), Some(20)), "{filter}");
        }
    }

    #[test]
    fn other_columns_operators_and_disjunctions_give_nothing() {
        let filters = [
            col("u").gt(at(10)),
            col("t").not_eq(at(10)),
            col("t").gt(at(10)).or(col("t").lt(at(5))),
            col("t").not_between(at(1), at(2)),
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(col("t")),
                DataType::Timestamp(TimeUnit::Second, None),
            ))
            .lt_eq(at(10)),
        ];
        assert!(time_comparisons("t", &filters).is_empty());
    }
}
