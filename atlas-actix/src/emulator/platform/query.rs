//! Query strings, pagination and sorting, as the platform reads them.

use std::cmp::Ordering;

use serde_json::{json, Value};

use crate::emulator::reply::ApiError;

/// A query string, read as `URLSearchParams.get` does: the first value of a name.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: &str) -> Self {
        Self(
            actix_web::web::Query::<Vec<(String, String)>>::from_query(raw)
                .map(actix_web::web::Query::into_inner)
                .unwrap_or_default(),
        )
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    }
}

pub(super) fn positive_int(query: &Query, name: &str, fallback: u64) -> Result<u64, ApiError> {
    let Some(text) = query.get(name).map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(fallback);
    };
    match text.parse::<f64>() {
        Ok(n) if n >= 1.0 && n.fract() == 0.0 && n <= u64::MAX as f64 => Ok(n as u64),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a positive integer"
        ))),
    }
}

pub(super) fn paginate(items: Vec<Value>, query: &Query) -> Result<Value, ApiError> {
    let page = positive_int(query, "page", 1)?;
    let page_size = positive_int(query, "pageSize", 10)?;
    let count = items.len() as u64;
    if query.get("all") == Some("true") {
        return Ok(json!({"results": items, "count": count, "pages": 1, "currentPage": 1}));
    }
    let start = (page - 1).saturating_mul(page_size);
    let results: Vec<Value> = items
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(page_size).unwrap_or(usize::MAX))
        .collect();
    Ok(json!({
        "results": results,
        "count": count,
        "pages": count.div_ceil(page_size),
        "currentPage": page,
    }))
}

/// Sorts by the `orderBy` field (`order` `asc` by default, or `desc`); items without the field
/// go last either way.
pub(super) fn sort_by(mut items: Vec<Value>, query: &Query) -> Result<Vec<Value>, ApiError> {
    let Some(field) = query.get("orderBy").filter(|f| !f.is_empty()) else {
        return Ok(items);
    };
    let descending = match query.get("order").unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        _ => return Err(ApiError::bad_request("order must be asc or desc")),
    };
    items.sort_by(|a, b| {
        let (x, y) = (a.get(field), b.get(field));
        let (x, y) = (x.filter(|v| !v.is_null()), y.filter(|v| !v.is_null()));
        match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let order = compare_values(x, y);
                if descending {
                    order.reverse()
                } else {
                    order
                }
            }
        }
    });
    Ok(items)
}

fn compare_values(x: &Value, y: &Value) -> Ordering {
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(raw: &str) -> Query {
        Query::parse(raw)
    }

    fn numbers(values: &[Value]) -> Vec<i64> {
        values
            .iter()
            .map(|v| v["n"].as_i64().unwrap_or(-1))
            .collect()
    }

    #[test]
    fn paginates_and_counts_pages() {
        let items: Vec<Value> = (1..=25).map(|n| json!({ "n": n })).collect();
        let page = paginate(items.clone(), &query("page=3&pageSize=10")).unwrap();
        assert_eq!(page["count"], 25);
        assert_eq!(page["pages"], 3);
        assert_eq!(page["currentPage"], 3);
        assert_eq!(page["results"].as_array().unwrap().len(), 5);
        let all = paginate(items, &query("all=true&pageSize=2")).unwrap();
        assert_eq!(all["results"].as_array().unwrap().len(), 25);
        assert_eq!(all["pages"], 1);
    }

    #[test]
    fn rejects_bad_page_numbers() {
        for bad in ["page=0", "page=-1", "page=1.5", "pageSize=abc"] {
            assert!(paginate(vec![], &query(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn sorts_with_missing_values_last() {
        let items = vec![json!({"n": 2}), json!({}), json!({"n": 3}), json!({"n": 1})];
        let asc = sort_by(items.clone(), &query("orderBy=n")).unwrap();
        assert_eq!(numbers(&asc), [1, 2, 3, -1]);
        let desc = sort_by(items.clone(), &query("orderBy=n&order=desc")).unwrap();
        assert_eq!(numbers(&desc), [3, 2, 1, -1]);
        assert!(sort_by(items, &query("orderBy=n&order=sideways")).is_err());
    }
}
