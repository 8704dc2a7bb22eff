//! S3 errors as one readable line.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// A failed S3 call as `Code: message` (e.g. `NoSuchBucket: The specified bucket does not
/// exist`) when the service answered, otherwise the error with its sources (a connection or
/// timeout failure) — without the raw HTTP response the SDK's debug output carries.
pub(crate) fn describe<E, R>(e: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(e).to_string(),
    }
}
