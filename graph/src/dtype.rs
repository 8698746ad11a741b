//! Element types of tensors ([`DType`]) and their mapping onto TensorFlow's `DataType` enum.
//!
//! Invariant: every Rill dtype has exactly one TensorFlow number; reference types (`*_REF`)
//! are mapped to their value type plus an `is_ref` flag by the caller, never stored here.

use std::fmt;

use crate::error::{Error, Result};
use rill_proto::DataType;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    String,
    /// A handle to a resource (TensorFlow's `DT_RESOURCE`): resource variables.
    Resource,
    /// TensorFlow's `DT_VARIANT`: an opaque value (kept for graphs that mention it).
    Variant,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 16] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
        DType::String,
        DType::Resource,
        DType::Variant,
    ];

    /// Bytes per element for fixed-size types; `None` for string, resource and variant.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::String | DType::Resource | DType::Variant => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::I8
                | DType::I16
                | DType::I32
                | DType::I64
                | DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
        )
    }

    /// TensorFlow's name in op definitions (`float`, `int32`, `half`, ...).
    pub fn tf_name(self) -> &'static str {
        match self {
            DType::F32 => "float",
            DType::F64 => "double",
            DType::F16 => "half",
            DType::BF16 => "bfloat16",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::String => "string",
            DType::Resource => "resource",
            DType::Variant => "variant",
        }
    }

    /// The TensorFlow `DataType` number.
    pub fn to_proto(self) -> DataType {
        match self {
            DType::F32 => DataType::DtFloat,
            DType::F64 => DataType::DtDouble,
            DType::F16 => DataType::DtHalf,
            DType::BF16 => DataType::DtBfloat16,
            DType::I8 => DataType::DtInt8,
            DType::I16 => DataType::DtInt16,
            DType::I32 => DataType::DtInt32,
            DType::I64 => DataType::DtInt64,
            DType::U8 => DataType::DtUint8,
            DType::U16 => DataType::DtUint16,
            DType::U32 => DataType::DtUint32,
            DType::U64 => DataType::DtUint64,
            DType::Bool => DataType::DtBool,
            DType::String => DataType::DtString,
            DType::Resource => DataType::DtResource,
            DType::Variant => DataType::DtVariant,
        }
    }

    /// Maps a TensorFlow `DataType` number to `(dtype, is_ref)`.
    pub fn from_proto(value: i32) -> Result<(DType, bool)> {
        let is_ref = (100..200).contains(&value);
        let base = if is_ref { value - 100 } else { value };
        let dtype = match DataType::try_from(base) {
            Ok(DataType::DtFloat) => DType::F32,
            Ok(DataType::DtDouble) => DType::F64,
            Ok(DataType::DtHalf) => DType::F16,
            Ok(DataType::DtBfloat16) => DType::BF16,
            Ok(DataType::DtInt8) => DType::I8,
            Ok(DataType::DtInt16) => DType::I16,
            Ok(DataType::DtInt32) => DType::I32,
            Ok(DataType::DtInt64) => DType::I64,
            Ok(DataType::DtUint8) => DType::U8,
            Ok(DataType::DtUint16) => DType::U16,
            Ok(DataType::DtUint32) => DType::U32,
            Ok(DataType::DtUint64) => DType::U64,
            Ok(DataType::DtBool) => DType::Bool,
            Ok(DataType::DtString) => DType::String,
            Ok(DataType::DtResource) => DType::Resource,
            Ok(DataType::DtVariant) => DType::Variant,
            Ok(DataType::DtInvalid) => {
                return Err(Error::invalid_argument("DT_INVALID is not a usable dtype"))
            }
            Ok(other) => {
                return Err(Error::unimplemented(format!(
                    "dtype {} is not supported by Rill",
                    other.as_str_name()
                )))
            }
            Err(_) => {
                return Err(Error::invalid_argument(format!(
                    "{value} is not a TensorFlow DataType"
                )))
            }
        };
        Ok((dtype, is_ref))
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tf_name())
    }
}

impl std::str::FromStr for DType {
    type Err = Error;

    /// Accepts `float`, `f32`, `DT_FLOAT` and the other spellings of each dtype.
    fn from_str(s: &str) -> Result<DType> {
        let lower = s.strip_prefix("DT_").unwrap_or(s).to_ascii_lowercase();
        let found = DType::ALL
            .into_iter()
            .find(|d| d.tf_name() == lower || format!("{d:?}").eq_ignore_ascii_case(&lower));
        match (found, lower.as_str()) {
            (Some(d), _) => Ok(d),
            (None, "f16") => Ok(DType::F16),
            (None, "int") => Ok(DType::I32),
            _ => Err(Error::invalid_argument(format!("unknown dtype '{s}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_for_every_dtype() {
        for d in DType::ALL {
            let n = d.to_proto() as i32;
            assert_eq!(DType::from_proto(n).unwrap(), (d, false));
            assert_eq!(DType::from_proto(n + 100).unwrap(), (d, true));
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!("float".parse::<DType>().unwrap(), DType::F32);
        assert_eq!("DT_INT64".parse::<DType>().unwrap(), DType::I64);
        assert_eq!("bf16".parse::<DType>().unwrap(), DType::BF16);
        assert!("complex64".parse::<DType>().is_err());
        assert_eq!(
            DType::from_proto(8).unwrap_err().code,
            crate::Code::Unimplemented
        );
        assert_eq!(
            DType::from_proto(77).unwrap_err().code,
            crate::Code::InvalidArgument
        );
    }
}
