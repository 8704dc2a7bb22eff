//! Migrations of operator state from older schema versions (see the parent module for when a
//! restore applies one). A window aggregate's accumulator migrates through its combiner
//! ([`crate::combine::migrate_from`]); the state of a keyed process function, the buffered values
//! of an interval join and the ids of a `deduplicate` migrate through a [`StateMigration`] given
//! to [`crate::KeyedStream::process_migrating`], [`crate::KeyedStream::interval_join_migrating`]
//! or [`crate::Stream::deduplicate_migrating`], built with [`from_version`].

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// How an operator lays out the values of its state in a key group's encoding, as a type generic
/// over the value type the author chose (implemented by the engine's stateful operators; a
/// migration decodes the layout with the old type and maps it to the new one).
pub trait StateLayout {
    /// The key group's decoded entries with values of type `A`.
    type With<A: Serialize + DeserializeOwned>: DeserializeOwned;
    /// Converts every value with `f`.
    fn map<A: Serialize + DeserializeOwned, B: Serialize + DeserializeOwned>(
        entries: Self::With<A>,
        f: &dyn Fn(A) -> B,
    ) -> Self::With<B>;
}

/// Decodes `bytes` in layout `L` with values of type `Old` and converts each with `f`.
pub(crate) fn decode_converted<L: StateLayout, Old: Serialize + DeserializeOwned, New: Serialize + DeserializeOwned>(
    bytes: &[u8],
    f: &dyn Fn(Old) -> New,
) -> Result<L::With<New>, postcard::Error> {
    postcard::from_bytes::<L::With<Old>>(bytes).map(|old| L::map(old, f))
}

/// The schema version of state values of type `V` and how older versions are read.
pub trait StateMigration<V: Serialize + DeserializeOwned>: Send + Sync + 'static {
    /// The schema version of `V`: 1, or one more than the newest version migrated from.
    fn version(&self) -> u32;
    /// The older versions [`StateMigration::upgrade`] reads.
    fn migrates_from(&self) -> Vec<u32>;
    /// Decodes a key group stored in layout `L` with values of schema version `from` into values
    /// of type `V`; `None` if there is no migration from `from`.
    fn upgrade<L: StateLayout>(&self, from: u32, bytes: &[u8]) -> Option<Result<L::With<V>, postcard::Error>>;
}

/// No migration: the state is version 1 of its type.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMigration;

impl<V: Serialize + DeserializeOwned> StateMigration<V> for NoMigration {
    fn version(&self) -> u32 {
        1
    }

    fn migrates_from(&self) -> Vec<u32> {
        Vec::new()
    }

    fn upgrade<L: StateLayout>(&self, _: u32, _: &[u8]) -> Option<Result<L::With<V>, postcard::Error>> {
        None
    }
}

/// A migration from one older version, after the migrations of `inner`; see [`from_version`].
pub struct FromVersion<M, Old, F> {
    inner: M,
    from: u32,
    f: F,
    _old: PhantomData<fn(Old)>,
}

/// Reads state stored at schema version `from` as `Old` and converts each value with `f`
/// (old → new); the state's version becomes `from + 1`. Chain
/// [`FromVersion::and_from_version`] to read several older versions, each straight to the
/// current type. State stored before schemas existed is version 1.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shardflow_engine::checkpoint::CheckpointImage;
/// use shardflow_engine::schema::from_version;
/// use shardflow_engine::{Engine, KeyedProcessFunction, Pipeline, ProcessContext, RestoreOutcome, TimeDomain, Timestamp};
///
/// // (user, event time, cents)
/// type Order = (u32, i64, i64);
///
/// /// Version 2 of the per-user state: version 1 was the order count alone.
/// #[derive(Serialize, Deserialize)]
/// struct Spent { orders: u64, cents: i64 }
///
/// struct Counter;
/// impl KeyedProcessFunction<u32, Order, u64, u64> for Counter {
///     fn process(&self, _: &u32, _: Order, cx: &mut ProcessContext<'_, u64, u64>) {
///         let n = cx.state().unwrap_or(0) + 1;
///         *cx.state() = Some(n);
///         cx.emit(n);
///     }
///     fn on_timer(&self, _: &u32, _: Timestamp, _: TimeDomain, _: &mut ProcessContext<'_, u64, u64>) {}
/// }
/// struct Spender;
/// impl KeyedProcessFunction<u32, Order, Spent, (u64, i64)> for Spender {
///     fn process(&self, _: &u32, o: Order, cx: &mut ProcessContext<'_, Spent, (u64, i64)>) {
///         let s = cx.state().get_or_insert(Spent { orders: 0, cents: 0 });
///         s.orders += 1;
///         s.cents += o.2;
///         let out = (s.orders, s.cents);
///         cx.emit(out);
///     }
///     fn on_timer(&self, _: &u32, _: Timestamp, _: TimeDomain, _: &mut ProcessContext<'_, Spent, (u64, i64)>) {}
/// }
///
/// let v1 = Pipeline::builder("users").event_time(|o: &Order| o.1).key_by(|o| o.0).process(Counter).sink("out");
/// let mut old = v1.engine();
/// let shard = old.partition("shard-0");
/// old.process(shard, 0, 0, (7, 10, 250));
/// let image = CheckpointImage::new(old.snapshot().unwrap());
///
/// let v2 = Pipeline::builder("users")
///     .event_time(|o: &Order| o.1)
///     .key_by(|o| o.0)
///     .process_migrating(Spender, from_version(1, |orders: u64| Spent { orders, cents: 0 }))
///     .sink("out");
/// let (mut new, report) = Engine::restore_with(&v2, &image, Default::default()).unwrap();
/// assert_eq!(report.operators[0].outcome, RestoreOutcome::Migrated { from: "keyed_process-0".into(), version: 1 });
/// new.process(shard, 1, 0, (7, 20, 100));
/// assert_eq!(new.drain_output()[0].value, (2, 100), "the stored count carried over");
/// ```
pub fn from_version<Old, F>(from: u32, f: F) -> FromVersion<NoMigration, Old, F> {
    FromVersion {
        inner: NoMigration,
        from,
        f,
        _old: PhantomData,
    }
}

impl<M, Old, F> FromVersion<M, Old, F> {
    /// Also reads state stored at schema version `from` as `Old2`, converted with `f`.
    pub fn and_from_version<Old2, F2>(self, from: u32, f: F2) -> FromVersion<Self, Old2, F2> {
        FromVersion {
            inner: self,
            from,
            f,
            _old: PhantomData,
        }
    }
}

impl<V, M, Old, F> StateMigration<V> for FromVersion<M, Old, F>
where
    V: Serialize + DeserializeOwned,
    M: StateMigration<V>,
    Old: Serialize + DeserializeOwned + 'static,
    F: Fn(Old) -> V + Send + Sync + 'static,
{
    fn version(&self) -> u32 {
        self.inner.version().max(self.from.saturating_add(1))
    }

    fn migrates_from(&self) -> Vec<u32> {
        let mut versions = self.inner.migrates_from();
        versions.push(self.from);
        versions
    }

    fn upgrade<L: StateLayout>(&self, from: u32, bytes: &[u8]) -> Option<Result<L::With<V>, postcard::Error>> {
        if from != self.from {
            return self.inner.upgrade::<L>(from, bytes);
        }
        Some(decode_converted::<L, Old, V>(bytes, &self.f))
    }
}
