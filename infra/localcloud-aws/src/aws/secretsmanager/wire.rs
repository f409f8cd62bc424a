//! Secrets Manager's wire form: request members, name and size checks, the errors' codes.

use serde_json::Value;

use super::MAX_SECRET_BYTES;
use crate::aws::AwsError;

pub(super) fn not_found(secret_id: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("Secrets Manager can't find the specified secret ({secret_id})"),
    )
}

pub(super) fn check_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty()
        || name.len() > 512
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(AwsError::validation(
            "Name must be 1 to 512 characters of letters, digits and /_+=.@-",
        ));
    }
    Ok(())
}

pub(super) fn check_string(string: &str) -> Result<(), AwsError> {
    if string.len() > MAX_SECRET_BYTES {
        return Err(AwsError::validation(format!(
            "SecretString is {} bytes, more than {MAX_SECRET_BYTES}",
            string.len()
        )));
    }
    Ok(())
}

pub(super) fn str_field<'a>(input: &'a Value, name: &str) -> Result<Option<&'a str>, AwsError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AwsError::validation(format!("{name} must be a string"))),
    }
}

pub(super) fn required<'a>(input: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    str_field(input, name)?.ok_or_else(|| AwsError::validation(format!("{name} is required")))
}
