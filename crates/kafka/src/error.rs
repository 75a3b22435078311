//! [`RequestError`]: why a request could not be answered at all. Every variant closes the
//! connection it arrived on (Kafka does the same for requests it cannot parse); errors a client
//! can act on travel inside responses instead, as Kafka error codes (see [`crate::error_map`]).

use jet_protocol::frame::FrameError;

/// A request that ends its connection.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The fault injector dropped this produce response (tests only).
    #[error("fault injection: dropped produce response")]
    InjectedFault,
    /// The size prefix or the header start is unacceptable.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An API key Kafka does not define.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// A Kafka API this server does not implement.
    #[error("api key {0} is not supported")]
    UnsupportedApi(i16),
    /// A version outside the range this server accepts for the API.
    #[error("api key {api_key} version {api_version} is not supported")]
    UnsupportedVersion {
        /// The API key.
        api_key: i16,
        /// The version asked for.
        api_version: i16,
    },
    /// The header or body does not decode.
    #[error("cannot decode request: {0}")]
    Decode(String),
    /// The response does not encode (a bug, or a response larger than a frame).
    #[error("cannot encode response: {0}")]
    Encode(String),
}
