//! Where checkpoints are kept: the one abstraction every state store implements.

use std::future::Future;

use super::{Checkpoint, CheckpointImage};

/// What a store holds after a commit: the engine's state and the input position committed with
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<P> {
    /// The engine's complete state as of the last commit.
    pub image: CheckpointImage,
    /// Where the input stood when the state was taken, committed atomically with it.
    pub position: P,
}

/// Durable storage of an engine's checkpoints and the input position each covers. The local
/// runner keeps them in a directory (`shardflow-local`), a Lambda stage in DynamoDB with large
/// key groups in S3 (`shardflow-state-dynamodb`), tests in memory ([`InMemoryStateStore`]).
///
/// Contract: after `commit(c, p)` returns `Ok`, a later `load` returns an image that includes `c`
/// and every checkpoint committed before it, with position `p`; a commit that fails leaves the
/// stored image and position as they were. A store may fence: a commit that lost to a concurrent
/// writer fails rather than overwrite it.
pub trait StateStore: Send {
    /// The store's error type.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The input position a commit records with the state: a shard's last sequence number (and a
    /// failing record) for a Lambda stage; `()` where the caller commits positions itself, as the
    /// local runner does in its manifest.
    type Position: Send + Sync;
    /// What a commit reports (items and bytes written, for metrics); `()` where nothing is
    /// counted.
    type CommitStats: Send;

    /// The last commit, or `None` if nothing was committed yet.
    fn load(&mut self) -> impl Future<Output = Result<Option<Committed<Self::Position>>, Self::Error>> + Send;

    /// Stores a checkpoint (full or incremental) on top of what is stored, with `position`.
    fn commit(
        &mut self,
        checkpoint: &Checkpoint,
        position: &Self::Position,
    ) -> impl Future<Output = Result<Self::CommitStats, Self::Error>> + Send;
}

/// A state store in memory, for tests and benchmarks (positions are not kept).
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
    type Position = ();
    type CommitStats = ();

    async fn load(&mut self) -> Result<Option<Committed<()>>, Self::Error> {
        Ok(self.image.clone().map(|image| Committed { image, position: () }))
    }

    async fn commit(&mut self, checkpoint: &Checkpoint, _: &()) -> Result<(), Self::Error> {
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
