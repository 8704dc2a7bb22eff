//! A stage's source: the Kinesis stream it reads and how a record decodes, on Lambda and on the
//! embedded runner alike.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use shardflow_local::{Input, InputError, JsonLinesFiles, ProtobufFiles};
use shardflow_stage::{DecodeError, JsonDecoder, ProtobufDecoder, RecordDecoder};

type DecodeFn<In> = Arc<dyn Fn(&[u8]) -> Result<In, DecodeError> + Send + Sync>;
type OpenLocalFn<In> = Arc<dyn Fn(&[PathBuf]) -> Result<Box<dyn Input<In>>, InputError> + Send + Sync>;

/// A Kinesis stream of records of `In` in one format.
pub struct Source<In> {
    pub(crate) stream: String,
    pub(crate) format: &'static str,
    decode: DecodeFn<In>,
    open_local: OpenLocalFn<In>,
}

impl<In> Clone for Source<In> {
    fn clone(&self) -> Self {
        Source {
            stream: self.stream.clone(),
            format: self.format,
            decode: self.decode.clone(),
            open_local: self.open_local.clone(),
        }
    }
}

impl<In: DeserializeOwned + 'static> Source<In> {
    /// The stream `stream` (a logical name, `[a-z][a-z0-9-]*`) of JSON records, one `In` each.
    /// Locally: JSON-lines files, one partition per file.
    pub fn json(stream: impl Into<String>) -> Self {
        let decoder = JsonDecoder::<In>::new();
        Source {
            stream: stream.into(),
            format: "json",
            decode: Arc::new(move |data| decoder.decode(data)),
            open_local: Arc::new(|paths| Ok(Box::new(JsonLinesFiles::<In>::open(paths)?))),
        }
    }
}

impl<In: prost::Message + Default + 'static> Source<In> {
    /// The stream `stream` of Protobuf messages, one `In` per record. Locally: length-delimited
    /// Protobuf files, one partition per file.
    pub fn protobuf(stream: impl Into<String>) -> Self {
        Source {
            format: "protobuf",
            ..Source::protobuf_as(stream)
        }
    }

    fn protobuf_as(stream: impl Into<String>) -> Self {
        let decoder = ProtobufDecoder::<In>::new();
        Source {
            stream: stream.into(),
            format: "protobuf",
            decode: Arc::new(move |data| decoder.decode(data)),
            open_local: Arc::new(|paths| Ok(Box::new(ProtobufFiles::<In>::open(paths)?))),
        }
    }
}

impl Source<shardflow_schemas::cdc::v1::ChangeEvent> {
    /// The stream `stream` of `shardflow cdc`'s generic change envelope
    /// (`shardflow.cdc.v1.ChangeEvent`, Protobuf). Locally: length-delimited files, as
    /// `shardflow cdc --out` writes them.
    pub fn cdc(stream: impl Into<String>) -> Self {
        Source {
            format: "cdc",
            ..Source::protobuf_as(stream)
        }
    }
}

impl<In> Source<In> {
    /// The stream's logical name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The format's name: `json`, `protobuf` or `cdc`.
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The decoder of the Lambda stage.
    pub fn decoder(&self) -> SourceDecoder<In> {
        SourceDecoder(self.decode.clone())
    }

    /// The embedded runner's input over local files in this format.
    pub fn open_local(&self, paths: &[PathBuf]) -> Result<Box<dyn Input<In>>, InputError> {
        (self.open_local)(paths)
    }
}

/// The decoder of a [`Source`]: never panics, an undecodable record is a [`DecodeError`] (a dead
/// letter).
pub struct SourceDecoder<In>(DecodeFn<In>);

impl<In> RecordDecoder<In> for SourceDecoder<In> {
    fn decode(&self, data: &[u8]) -> Result<In, DecodeError> {
        (self.0)(data)
    }
}
