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
}

impl From<protobuf::ProtobufError> for StorageError {
    fn from(e: protobuf::ProtobufError) -> Self {
        StorageError::Corrupt(format!("protobuf: {e}"))
    }
}
