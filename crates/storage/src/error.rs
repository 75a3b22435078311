//! The storage crate's error type.

/// What can go wrong below the broker: RocksDB itself, or bytes on disk that do not decode.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB returned an error (I/O, corruption, ...).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value could not be decoded: the data directory is damaged or from another version.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The data directory was written in a storage format this build does not read.
    #[error("{0}")]
    Format(String),
    /// The data directory belongs to another node.
    #[error("the data directory belongs to node {stored}, not to node {given} (use --node-id {stored} or another data directory)")]
    NodeIdMismatch {
        /// The id the directory was first used with.
        stored: u64,
        /// The id given now.
        given: u64,
    },
}

impl From<protobuf::ProtobufError> for StorageError {
    fn from(e: protobuf::ProtobufError) -> Self {
        StorageError::Corrupt(format!("protobuf: {e}"))
    }
}
