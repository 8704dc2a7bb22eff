//! The shop's change envelope in JSON: the runtime's `JsonDecoder` and the envelope's accessors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardflow_stage::{JsonDecoder, RecordDecoder};
use shardflow_schemas::ChangeEvent;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = JsonDecoder::<ChangeEvent>::new().decode(data) {
        let _ = (event.event_time(), event.table());
        for entity in [event.before_entity(), event.after_entity()].into_iter().flatten() {
            let _ = (entity.table(), entity.primary_key());
        }
    }
});
