//! Query strings, path values and headers, checked into typed values. axum's own extractors
//! answer bad input with plain text; these answer with [`HttpError`], so every refusal names the
//! parameter and the value it got, in the proxy's JSON.

use std::collections::HashMap;

use axum::http::{header, HeaderMap};

use crate::error::HttpError;

/// A parsed query string: each name once (a repeated name is refused, since it is ambiguous).
#[derive(Debug, Default)]
pub struct Query {
    values: HashMap<String, String>,
}

impl Query {
    /// Parses `a=1&b=x%20y`. `None` is an empty query.
    pub fn parse(raw: Option<&str>) -> Result<Query, HttpError> {
        let mut values = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name)?;
            let value = percent_decode(value)?;
            if values.insert(name.clone(), value).is_some() {
                return Err(HttpError::BadRequest(format!(
                    "query parameter '{name}' given more than once"
                )));
            }
        }
        Ok(Query { values })
    }

    /// Refuses any parameter not in `known`, so a typo is not silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), HttpError> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(HttpError::BadRequest(format!(
                "unknown query parameter '{k}'; this route takes: {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// An integer parameter within `min..=max`, or `default` when absent.
    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, HttpError> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => int_in(name, v, min, max),
        }
    }

    /// An integer parameter that must be present.
    pub fn required_int(&self, name: &str, min: i64, max: i64) -> Result<i64, HttpError> {
        match self.values.get(name) {
            None => Err(HttpError::BadRequest(format!(
                "query parameter '{name}' is required"
            ))),
            Some(v) => int_in(name, v, min, max),
        }
    }
}

/// `value` as an integer in `min..=max`; the error names `what`.
pub fn int_in(what: &str, value: &str, min: i64, max: i64) -> Result<i64, HttpError> {
    let n: i64 = value.trim().parse().map_err(|_| {
        HttpError::BadRequest(format!("'{what}' must be an integer, got '{value}'"))
    })?;
    if n < min || n > max {
        return Err(HttpError::Unprocessable(format!(
            "'{what}' must be between {min} and {max}, got {n}"
        )));
    }
    Ok(n)
}

/// A partition number from the path.
pub fn partition(value: &str) -> Result<i32, HttpError> {
    int_in("partition", value, 0, i64::from(i32::MAX)).map(|n| n as i32)
}

/// Most bytes in a topic name (Kafka's limit).
const TOPIC_NAME_MAX: usize = 249;

/// A topic name as Kafka allows it: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn topic(value: &str) -> Result<String, HttpError> {
    let ok = !value.is_empty()
        && value.len() <= TOPIC_NAME_MAX
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(HttpError::Unprocessable(format!(
            "invalid topic name '{value}': 1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-'"
        )))
    }
}

/// Most bytes in a group or consumer instance name.
const NAME_MAX: usize = 255;

/// A consumer group or instance name: 1–255 printable ASCII characters, no '/'.
pub fn name(what: &str, value: &str) -> Result<String, HttpError> {
    let ok = !value.is_empty()
        && value.len() <= NAME_MAX
        && value.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if ok {
        Ok(value.to_string())
    } else {
        Err(HttpError::Unprocessable(format!(
            "invalid {what} '{value}': 1 to 255 printable ASCII characters without '/'"
        )))
    }
}

/// The media type of the request body, lowercased and without parameters (`; charset=...`).
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
}

/// The media types a client accepts, in order, without parameters; empty when it sent no Accept.
pub fn accept(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(media_type)
        .filter(|m| !m.is_empty())
        .collect()
}

fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes `%XX` escapes and `+` (a space in query strings); the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        HttpError::BadRequest(format!("bad percent-encoding in '{s}'"))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| HttpError::BadRequest(format!("query value '{s}' is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_check() {
        let q = Query::parse(Some("offset=5&count=10&x=a%20b+c")).unwrap();
        assert_eq!(q.int("offset", 0, 0, 100).unwrap(), 5);
        assert_eq!(q.int("missing", 7, 0, 100).unwrap(), 7);
        assert_eq!(q.values["x"], "a b c");
        assert!(q.only(&["offset", "count"]).is_err());
        assert!(q.only(&["offset", "count", "x"]).is_ok());
        assert!(matches!(
            q.int("count", 0, 0, 5),
            Err(HttpError::Unprocessable(_))
        ));
        assert!(matches!(
            q.required_int("nope", 0, 5),
            Err(HttpError::BadRequest(_))
        ));
        assert!(Query::parse(Some("a=1&a=2")).is_err());
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert!(Query::parse(Some("a=%ff")).is_err());
        assert!(Query::parse(Some("a=%4")).is_err());
        let bad = Query::parse(Some("offset=abc")).unwrap();
        assert!(matches!(
            bad.int("offset", 0, 0, 9),
            Err(HttpError::BadRequest(_))
        ));
        assert!(Query::parse(None).unwrap().values.is_empty());
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(topic("a.b_c-1").unwrap(), "a.b_c-1");
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(topic(bad).is_err(), "{bad}");
        }
        assert!(name("group", "g 1").is_err());
        assert!(name("group", "g/1").is_err());
        assert_eq!(name("group", "g-1").unwrap(), "g-1");
        assert_eq!(partition("3").unwrap(), 3);
        assert!(partition("-1").is_err());
        assert!(partition("99999999999").is_err());
        assert!(partition("x").is_err());
    }

    #[test]
    fn media_types_drop_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "Application/Vnd.Kafka.Binary.v2+JSON; charset=utf-8"
                .parse()
                .unwrap(),
        );
        h.insert(
            header::ACCEPT,
            "application/vnd.kafka.json.v2+json, */*;q=0.1"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            content_type(&h).unwrap(),
            "application/vnd.kafka.binary.v2+json"
        );
        assert_eq!(accept(&h), ["application/vnd.kafka.json.v2+json", "*/*"]);
    }
}
