//! Compiles the Protobuf schemas with the vendored `protoc` (no system install needed), and
//! derives serde on the shop's generated types so that the same types read and write JSON (the
//! generic CDC envelope `shardflow.cdc.v1` has its JSON form in `shardflow-cdc`).

use std::path::PathBuf;

const PACKAGE: &str = ".shardflow.shop.v1";

/// Messages that are plain structs in JSON (every field, defaults for missing ones).
const MESSAGES: &[&str] = &[
    "Customer",
    "Order",
    "OrderLine",
    "Payment",
    "Shipment",
    "Source",
    "ChangeEvent",
];

/// Enum-typed fields (`i32` in prost) and the module of `crate::serde_enum` that maps them to
/// their names in JSON.
const ENUM_FIELDS: &[(&str, &str)] = &[
    ("Order.status", "order_status"),
    ("Payment.status", "payment_status"),
    ("Shipment.status", "shipment_status"),
    ("ChangeEvent.op", "op"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let proto_dir = PathBuf::from("proto");
    let files = [
        proto_dir.join("shardflow/shop/v1/entities.proto"),
        proto_dir.join("shardflow/shop/v1/change.proto"),
        proto_dir.join("shardflow/cdc/v1/change.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    for m in MESSAGES {
        config.message_attribute(
            format!("{PACKAGE}.{m}"),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        );
    }
    // A row image is its entity, tagged by table: `{"order": {...}}`.
    config.message_attribute(
        format!("{PACKAGE}.Row"),
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(transparent)]",
    );
    config.enum_attribute(
        format!("{PACKAGE}.Row.entity"),
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"snake_case\")]",
    );
    for (field, module) in ENUM_FIELDS {
        config.field_attribute(
            format!("{PACKAGE}.{field}"),
            format!("#[serde(with = \"crate::serde_enum::{module}\")]"),
        );
    }
    config.compile_protos(&files, &[proto_dir])?;
    Ok(())
}
