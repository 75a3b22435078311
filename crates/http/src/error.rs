//! [`HttpError`]: every refusal of the HTTP API, answered as the Confluent REST Proxy does: a
//! status code and a JSON body `{"error_code": N, "message": "..."}`, where `error_code` is the
//! proxy's code (the status, or the status followed by two digits, e.g. 40401 for an unknown
//! topic).
//!
//! Refusals that happen before a handler runs — a path segment that is not UTF-8, a body over
//! the size limit, a method a route does not have, an unknown route — come from axum as plain
//! text; [`json_errors`] rewrites every such answer into the same JSON shape, so a client never
//! has to parse anything else.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The proxy's content type for its own (non-record) JSON.
pub const V2_JSON: &str = "application/vnd.kafka.v2+json";

/// A refused HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The topic does not exist.
    #[error("topic '{0}' not found")]
    TopicNotFound(String),
    /// The partition does not exist.
    #[error("partition {partition} of topic '{topic}' not found")]
    PartitionNotFound {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
    },
    /// No such consumer instance (never created, deleted, or removed after idling).
    #[error("consumer instance '{instance}' of group '{group}' not found")]
    ConsumerNotFound {
        /// The group.
        group: String,
        /// The instance name.
        instance: String,
    },
    /// A consumer instance of that name exists in the group already.
    #[error("consumer instance '{0}' already exists")]
    ConsumerExists(String),
    /// Subscribing and assigning are exclusive, as in the Kafka consumer.
    #[error("{0}")]
    SubscriptionConflict(String),
    /// The thing to create exists already (a topic).
    #[error("{0}")]
    Conflict(String),
    /// The body is not JSON, or not the JSON the route takes.
    #[error("{0}")]
    BadRequest(String),
    /// The JSON is well formed, but a value is not acceptable.
    #[error("{0}")]
    Unprocessable(String),
    /// A consumer setting is unknown or has a bad value.
    #[error("invalid consumer config: {0}")]
    InvalidConsumerConfig(String),
    /// A record is not in the format asked for (e.g. not JSON for the json format).
    #[error("{0}")]
    RecordFormat(String),
    /// The Content-Type is not one the route takes.
    #[error("unsupported content type '{got}'; use one of: {supported}")]
    UnsupportedMediaType {
        /// What the request said.
        got: String,
        /// What the route takes.
        supported: &'static str,
    },
    /// The Accept header asks for a format the route cannot give.
    #[error("{0}")]
    NotAcceptable(String),
    /// Too many consumer instances on this node.
    #[error("{0}")]
    TooMany(String),
    /// The body is over `max_body_bytes`.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// No route has this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// Kafka answered with an error for the request as a whole.
    #[error("kafka error {code} ({name}): {message}")]
    Kafka {
        /// The Kafka error code.
        code: i16,
        /// Its name.
        name: String,
        /// What went wrong.
        message: String,
        /// Whether a retry may succeed.
        retriable: bool,
    },
    /// The node cannot answer at all (shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// A bug: the in-process dispatch answered with something unexpected.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    /// A Kafka error code as an error; `None` for code 0.
    pub fn from_kafka_code(code: i16, context: impl Into<String>) -> Option<HttpError> {
        let err = kafka_protocol::ResponseError::try_from_code(code)?;
        Some(HttpError::Kafka {
            code,
            name: format!("{err:?}"),
            message: context.into(),
            retriable: err.is_retriable(),
        })
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::TopicNotFound(_)
            | HttpError::PartitionNotFound { .. }
            | HttpError::ConsumerNotFound { .. }
            | HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::ConsumerExists(_)
            | HttpError::SubscriptionConflict(_)
            | HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unprocessable(_)
            | HttpError::InvalidConsumerConfig(_)
            | HttpError::RecordFormat(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HttpError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            HttpError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Kafka {
                retriable: true, ..
            }
            | HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Kafka { .. } | HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The proxy's error code (Confluent REST Proxy `Errors`): the status, or a five-digit
    /// refinement of it.
    pub fn error_code(&self) -> u32 {
        match self {
            HttpError::TopicNotFound(_) => 40401,
            HttpError::PartitionNotFound { .. } => 40402,
            HttpError::ConsumerNotFound { .. } => 40403,
            HttpError::SubscriptionConflict(_) => 40901,
            HttpError::ConsumerExists(_) => 40902,
            HttpError::RecordFormat(_) => 42203,
            HttpError::InvalidConsumerConfig(_) => 42204,
            HttpError::NotAcceptable(_) => 40601,
            HttpError::Kafka {
                retriable: true, ..
            } => 50003,
            HttpError::Kafka { .. } => 50002,
            other => u32::from(other.status().as_u16()),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        error_response(self.status(), self.error_code(), &self.to_string())
    }
}

/// The proxy's error body with `status`.
pub fn error_response(status: StatusCode, error_code: u32, message: &str) -> Response {
    let body = serde_json::json!({ "error_code": error_code, "message": message });
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(V2_JSON));
    resp
}

/// The fallback route: 404 in the proxy's format.
pub async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::NotFound(uri.path().to_string())
}

/// Largest plain-text error body that is carried into the JSON message.
const MESSAGE_MAX_BYTES: usize = 4096;

/// Rewrites any 4xx or 5xx answer that is not JSON (axum's rejections: bad path values, body
/// over the limit, wrong method) into the proxy's JSON error, keeping its status and text.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), MESSAGE_MAX_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    error_response(status, u32::from(status.as_u16()), &message)
}

/// A JSON answer with the proxy's content type.
pub fn v2_json(status: StatusCode, value: &serde_json::Value) -> Response {
    json_with(status, value, V2_JSON)
}

/// A JSON answer with `content_type`.
pub fn json_with(status: StatusCode, value: &serde_json::Value, content_type: &str) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_proxy() {
        assert_eq!(HttpError::TopicNotFound("t".into()).error_code(), 40401);
        assert_eq!(HttpError::TopicNotFound("t".into()).status(), 404);
        let e = HttpError::PartitionNotFound {
            topic: "t".into(),
            partition: 9,
        };
        assert_eq!((e.status().as_u16(), e.error_code()), (404, 40402));
        assert_eq!(HttpError::BadRequest("x".into()).error_code(), 400);
        assert_eq!(HttpError::Unprocessable("x".into()).error_code(), 422);
        assert_eq!(HttpError::PayloadTooLarge(1).error_code(), 413);
        let retriable = HttpError::from_kafka_code(6, "leader moved").unwrap();
        assert_eq!(
            (retriable.status().as_u16(), retriable.error_code()),
            (503, 50003)
        );
        let fatal = HttpError::from_kafka_code(87, "bad record").unwrap();
        assert_eq!((fatal.status().as_u16(), fatal.error_code()), (500, 50002));
        assert!(HttpError::from_kafka_code(0, "").is_none());
    }

    #[tokio::test]
    async fn plain_text_refusals_become_json() {
        let plain = (StatusCode::BAD_REQUEST, "Invalid URL").into_response();
        let resp = json_errors(plain).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error_code"], 400);
        assert_eq!(v["message"], "Invalid URL");
        let ok = json_errors((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
