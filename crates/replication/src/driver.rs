//! The multi-raft driver (being written).
use std::sync::Arc;

use jet_storage::Store;
use tokio::sync::{mpsc, oneshot};

use crate::command::AppendItem;
use crate::metadata::{MetaCommand, MetaEffect};
use crate::node::{AppendOutcome, NodeConfig, Shared};
use crate::Error;
use jet_storage::TopicPartition;

pub(crate) enum DriverMsg {
    Append { shard: u64, item: AppendItem, tx: oneshot::Sender<Result<AppendOutcome, Error>> },
    DeleteRecords { shard: u64, tp: TopicPartition, offset: i64, tx: oneshot::Sender<Result<i64, Error>> },
    Meta { cmd: MetaCommand, tx: oneshot::Sender<Result<MetaEffect, Error>> },
    Shutdown { tx: oneshot::Sender<()> },
}

pub(crate) fn spawn(
    _config: NodeConfig,
    _store: Store,
    _shared: Arc<Shared>,
    _rx: mpsc::Receiver<DriverMsg>,
    _ready: oneshot::Sender<Result<(), Error>>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    Err(Error::ShuttingDown)
}
