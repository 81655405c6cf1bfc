//! Runs openraft's own storage conformance suite against the RocksDB log store
//! and state machine, on real RocksDB databases in temporary directories.

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{LogId, StorageError};
use serde::{Deserialize, Serialize};
use sluice_storage::{MemberDir, RocksLogStore, RocksStateMachine, StateLogic};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Put {
    key: String,
    value: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Previous(Option<String>);

openraft::declare_raft_types!(
    KvConfig:
        D = Put,
        R = Previous,
);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kv(BTreeMap<String, String>);

impl StateLogic<KvConfig> for Kv {
    fn apply(&mut self, _log_id: &LogId<u64>, command: &Put) -> Previous {
        Previous(self.0.insert(command.key.clone(), command.value.clone()))
    }

    fn empty_response() -> Previous {
        Previous(None)
    }
}

struct Builder;

impl
    StoreBuilder<
        KvConfig,
        RocksLogStore<KvConfig>,
        RocksStateMachine<KvConfig, Kv>,
        tempfile::TempDir,
    > for Builder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            RocksLogStore<KvConfig>,
            RocksStateMachine<KvConfig, Kv>,
        ),
        StorageError<u64>,
    > {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = MemberDir::open(tmp.path(), 0).expect("open member dir");
        let log = RocksLogStore::open(&dir).expect("open log store");
        let sm = RocksStateMachine::open(&dir)?;
        Ok((tmp, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_rocksdb() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)
}
