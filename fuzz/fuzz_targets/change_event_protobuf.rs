//! The shop's change envelope in Protobuf: the runtime's `ProtobufDecoder` and the envelope's
//! accessors; a decoded message re-encodes to a message that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardflow_stage::{ProtobufDecoder, RecordDecoder};
use shardflow_schemas::ChangeEvent;

fuzz_target!(|data: &[u8]| {
    let decoder = ProtobufDecoder::<ChangeEvent>::new();
    if let Ok(event) = decoder.decode(data) {
        let _ = (event.event_time(), event.table());
        for entity in [event.before_entity(), event.after_entity()].into_iter().flatten() {
            let _ = (entity.table(), entity.primary_key());
        }
        let again = decoder.decode(&prost::Message::encode_to_vec(&event));
        assert_eq!(again.as_ref(), Ok(&event), "re-encoded message decodes to itself");
    }
});
