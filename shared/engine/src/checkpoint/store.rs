//! Where checkpoints are kept.

use std::future::Future;

use super::{Checkpoint, CheckpointImage};

/// Durable storage of an engine's checkpoints: the local runner keeps them in a directory, the
/// Lambda runtime in DynamoDB (large groups in S3).
///
/// Contract: after `commit(c)` returns `Ok`, a later `load` returns an image that includes `c`
/// and every checkpoint committed before it; a commit that fails leaves the stored image as it was.
pub trait StateStore: Send {
    /// The store's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The complete stored state, or `None` if nothing was committed yet.
    fn load(&mut self) -> impl Future<Output = Result<Option<CheckpointImage>, Self::Error>> + Send;

    /// Stores a checkpoint (full or incremental) on top of what is stored.
    fn commit(&mut self, checkpoint: &Checkpoint) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A state store in memory, for tests and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct InMemoryStateStore {
    image: Option<CheckpointImage>,
    /// Number of commits so far.
    pub commits: usize,
    /// Key groups written by all commits so far.
    pub key_groups_written: usize,
}

impl StateStore for InMemoryStateStore {
    type Error = crate::error::StateError;

    async fn load(&mut self) -> Result<Option<CheckpointImage>, Self::Error> {
        Ok(self.image.clone())
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), Self::Error> {
        // Round-trip through the encoding, as a real store would.
        let decoded = Checkpoint::decode(&checkpoint.encode()?)?;
        self.key_groups_written += decoded.key_groups_written();
        match &mut self.image {
            Some(image) if !decoded.full => image.apply(decoded)?,
            _ => self.image = Some(CheckpointImage::new(decoded)),
        }
        self.commits += 1;
        Ok(())
    }
}
