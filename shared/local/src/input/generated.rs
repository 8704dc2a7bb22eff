//! Generated input: one iterator per partition.

use super::{Input, InputError, Item};

/// An input whose partitions are iterators of values (a data generator, test data).
pub struct IterInput<In> {
    partitions: Vec<(String, Box<dyn Iterator<Item = In>>)>,
}

impl<In> IterInput<In> {
    /// Partitions named and produced by the given iterators.
    pub fn new(partitions: Vec<(String, Box<dyn Iterator<Item = In>>)>) -> Self {
        IterInput { partitions }
    }

    /// Partitions `shard-0`, `shard-1`, ... holding the given values.
    pub fn from_vecs(shards: Vec<Vec<In>>) -> Self
    where
        In: 'static,
    {
        IterInput::new(
            shards
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        format!("shard-{i}"),
                        Box::new(v.into_iter()) as Box<dyn Iterator<Item = In>>,
                    )
                })
                .collect(),
        )
    }
}

impl<In> Input<In> for IterInput<In> {
    fn partitions(&self) -> Vec<String> {
        self.partitions.iter().map(|(n, _)| n.clone()).collect()
    }

    fn next(&mut self, p: usize) -> Result<Option<Item<In>>, InputError> {
        Ok(self
            .partitions
            .get_mut(p)
            .and_then(|(_, it)| it.next())
            .map(Item::Value))
    }
}
