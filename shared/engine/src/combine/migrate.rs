//! Accumulator migrations: a combiner whose accumulator type changed reads the accumulators a
//! checkpoint stored in an older type (see [`crate::schema`]).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Combiner;
use crate::schema::{decode_converted, StateLayout};

/// A combiner that also reads accumulators stored as `Old` at schema version `from`; see
/// [`migrate_from`].
pub struct Migrate<C, Old, F> {
    inner: C,
    from: u32,
    f: F,
    _old: PhantomData<fn(Old)>,
}

/// `combiner`, reading the accumulators a checkpoint stored at schema version `from` as `Old`
/// and converting each with `f` (old → new). The accumulator's schema version becomes `from + 1`
/// (or stays higher if `combiner` already migrates from a later version); wrap again to migrate
/// from several versions, each straight to the current type. State stored before schemas existed
/// is version 1. See [`crate::schema`] for when a restore migrates and when it refuses.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shardflow_engine::checkpoint::CheckpointImage;
/// use shardflow_engine::combine::{from_fns, migrate_from, Combiner};
/// use shardflow_engine::{Engine, Pipeline, RestoreOptions, RestoreOutcome, WatermarkStrategy, Windowing};
///
/// // (product, event time, cents)
/// type Order = (u32, i64, i64);
///
/// /// Orders and cents per product and window, aggregated by `combiner`.
/// fn totals<C: Combiner<Order, Out = (u64, i64)>>(combiner: C) -> Pipeline<Order, (u64, i64)> {
///     Pipeline::builder("orders")
///         .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
///         .event_time(|o: &Order| o.1)
///         .key_by(|o| o.0)
///         .window(Windowing::tumbling(100).unwrap())
///         .aggregate(combiner, |_, _, _, totals| totals)
///         .uid("totals")
///         .unwrap()
///         .sink("totals")
/// }
///
/// // Version 1 counted orders only.
/// let v1 = from_fns(|| 0u64, |n: &mut u64, _: &Order| *n += 1, |n, m| *n += m, |n: &u64| (*n, 0i64));
/// let mut old = totals(v1).engine();
/// let shard = old.partition("shard-0");
/// old.process(shard, 0, 0, (7, 10, 250));
/// let image = CheckpointImage::new(old.snapshot().unwrap());
///
/// // Version 2 also sums the cents: a field added, with a migration from version 1.
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Totals { orders: u64, cents: i64 }
/// let v2 = from_fns(
///     || Totals { orders: 0, cents: 0 },
///     |t: &mut Totals, o: &Order| { t.orders += 1; t.cents += o.2 },
///     |t: &mut Totals, o: Totals| { t.orders += o.orders; t.cents += o.cents },
///     |t: &Totals| (t.orders, t.cents),
/// );
/// let migrated = migrate_from(v2, 1, |orders: u64| Totals { orders, cents: 0 });
/// let (mut new, report) = Engine::restore_with(&totals(migrated), &image, RestoreOptions::strict()).unwrap();
/// assert_eq!(report.operators[0].outcome, RestoreOutcome::Migrated { from: "totals".into(), version: 1 });
/// new.process(shard, 1, 0, (7, 20, 100));
/// new.finish();
/// assert_eq!(new.drain_output()[0].value, (2, 100), "the stored count carried over");
/// ```
pub fn migrate_from<C, Old, F>(combiner: C, from: u32, f: F) -> Migrate<C, Old, F> {
    Migrate {
        inner: combiner,
        from,
        f,
        _old: PhantomData,
    }
}

impl<In, C, Old, F> Combiner<In> for Migrate<C, Old, F>
where
    C: Combiner<In>,
    Old: Serialize + DeserializeOwned + 'static,
    F: Fn(Old) -> C::Acc + Send + Sync + 'static,
{
    type Acc = C::Acc;
    type Out = C::Out;

    fn create(&self) -> Self::Acc {
        self.inner.create()
    }

    fn add(&self, acc: &mut Self::Acc, input: &In) {
        self.inner.add(acc, input);
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.inner.merge(acc, other);
    }

    fn extract(&self, acc: &Self::Acc) -> Self::Out {
        self.inner.extract(acc)
    }

    fn state_version(&self) -> u32 {
        self.inner.state_version().max(self.from.saturating_add(1))
    }

    fn migrates_from(&self) -> Vec<u32> {
        let mut versions = self.inner.migrates_from();
        versions.push(self.from);
        versions
    }

    fn upgrade<L: StateLayout>(&self, from: u32, bytes: &[u8]) -> Option<Result<L::With<Self::Acc>, postcard::Error>> {
        if from != self.from {
            return self.inner.upgrade::<L>(from, bytes);
        }
        Some(decode_converted::<L, Old, C::Acc>(bytes, &self.f))
    }
}
