//! The manifest stored in a shard's checkpoint item.

use serde::{Deserialize, Serialize};
use shardflow_engine::checkpoint::{Checkpoint, KeyGroupState, OperatorState};

/// Where a key group's live state is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupRef {
    pub key_group: u16,
    /// The slot item's id: the random id of the commit attempt that wrote it.
    pub slot: u64,
    /// The checkpoint version the slot was written for.
    pub version: u64,
    /// When the slot was written (epoch seconds): a group not rewritten for half the state
    /// horizon is rewritten by the next commit, so that TTL never removes live state.
    pub written_at: u64,
    /// The S3 object key, when the group is spilled (the slot item holds the full pointer).
    pub object: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperatorManifest {
    pub id: String,
    pub meta: Vec<u8>,
    /// Sorted by key group.
    pub groups: Vec<GroupRef>,
}

/// Everything but the key groups' bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub pipeline: String,
    pub max_key_groups: u16,
    pub epoch: u64,
    pub engine: Vec<u8>,
    pub operators: Vec<OperatorManifest>,
}

impl Manifest {
    pub fn empty(pipeline: &str, max_key_groups: u16) -> Self {
        Manifest {
            pipeline: pipeline.to_owned(),
            max_key_groups,
            epoch: 0,
            engine: Vec::new(),
            operators: Vec::new(),
        }
    }

    pub fn operator_mut(&mut self, id: &str) -> &mut OperatorManifest {
        if let Some(i) = self.operators.iter().position(|o| o.id == id) {
            return &mut self.operators[i];
        }
        self.operators.push(OperatorManifest {
            id: id.to_owned(),
            meta: Vec::new(),
            groups: Vec::new(),
        });
        self.operators.last_mut().expect("just pushed")
    }

    /// The full checkpoint this manifest describes, given each group's bytes.
    pub fn to_checkpoint(&self, mut bytes_of: impl FnMut(&str, &GroupRef) -> Vec<u8>) -> Checkpoint {
        Checkpoint {
            pipeline: self.pipeline.clone(),
            max_key_groups: self.max_key_groups,
            epoch: self.epoch,
            full: true,
            engine: self.engine.clone(),
            operators: self
                .operators
                .iter()
                .map(|o| OperatorState {
                    operator: o.id.clone(),
                    meta: o.meta.clone(),
                    key_groups: o
                        .groups
                        .iter()
                        .map(|g| KeyGroupState {
                            key_group: g.key_group,
                            bytes: bytes_of(&o.id, g),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl OperatorManifest {
    pub fn set(&mut self, r: GroupRef) {
        match self.groups.binary_search_by_key(&r.key_group, |g| g.key_group) {
            Ok(i) => self.groups[i] = r,
            Err(i) => self.groups.insert(i, r),
        }
    }

    pub fn remove(&mut self, group: u16) -> Option<GroupRef> {
        match self.groups.binary_search_by_key(&group, |g| g.key_group) {
            Ok(i) => Some(self.groups.remove(i)),
            Err(_) => None,
        }
    }

    pub fn get(&self, group: u16) -> Option<&GroupRef> {
        self.groups
            .binary_search_by_key(&group, |g| g.key_group)
            .ok()
            .map(|i| &self.groups[i])
    }
}
