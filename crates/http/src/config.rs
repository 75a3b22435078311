//! [`HttpConfig`]: the limits of the HTTP listener. The broker fills it from its `--http-*`
//! flags; tests start from [`HttpConfig::default`]. Every limit is enforced: the body size by
//! axum's body limit before a handler runs, the rest by the handlers, each with a 4xx JSON
//! answer naming the limit.

use std::time::Duration;

/// Limits and timeouts of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Most records in one produce request, and most records one read returns.
    pub max_records: usize,
    /// Longest a read may wait for records (the `timeout` of a consumer's records request and of
    /// the simple read); longer requested waits are cut to this.
    pub max_wait: Duration,
    /// Most bytes of record batches one read fetches.
    pub max_response_bytes: usize,
    /// A consumer instance that makes no request for this long is deleted (it leaves its group).
    pub consumer_idle_timeout: Duration,
    /// Most consumer instances on this node at once; creating one more gets 429.
    pub max_consumers: usize,
}

impl Default for HttpConfig {
    /// The broker's defaults: 16 MiB bodies, 10,000 records, 30 s waits, 8 MiB reads, consumers
    /// idle for 5 minutes removed (the Confluent proxy's `consumer.instance.timeout.ms`), 1,000
    /// consumer instances.
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_records: 10_000,
            max_wait: Duration::from_secs(30),
            max_response_bytes: 8 << 20,
            consumer_idle_timeout: Duration::from_secs(300),
            max_consumers: 1000,
        }
    }
}
