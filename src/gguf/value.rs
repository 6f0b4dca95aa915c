//! GGUF metadata values: the thirteen value types, arrays (which may nest), and typed access.

use std::fmt;

/// The type tag of a metadata value (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Type id 0: unsigned 8-bit integer.
    U8,
    /// Type id 1: signed 8-bit integer.
    I8,
    /// Type id 2: unsigned 16-bit integer.
    U16,
    /// Type id 3: signed 16-bit integer.
    I16,
    /// Type id 4: unsigned 32-bit integer.
    U32,
    /// Type id 5: signed 32-bit integer.
    I32,
    /// Type id 6: 32-bit float.
    F32,
    /// Type id 7: boolean stored as one byte (0 or 1).
    Bool,
    /// Type id 8: UTF-8 string with a u64 length prefix.
    String,
    /// Type id 9: array (element type, u64 count, elements).
    Array,
    /// Type id 10: unsigned 64-bit integer.
    U64,
    /// Type id 11: signed 64-bit integer.
    I64,
    /// Type id 12: 64-bit float.
    F64,
}

impl ValueType {
    /// The type for a type id read from a file; `None` outside 0..=12.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes one value of this type takes on disk, for fixed-size types.
    fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes one value of this type can take (a string or array has at least its
    /// 8-byte length; an array also its 4-byte element type). Used to reject absurd counts before
    /// allocating.
    pub fn min_size(self) -> usize {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.fixed_size().unwrap_or(1),
        }
    }

    /// Lower-case name used in messages and `pigpu inspect` (`u8`, `string`, `array`, …).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A `u8` value (type id 0).
    U8(u8),
    /// An `i8` value (type id 1).
    I8(i8),
    /// A `u16` value (type id 2).
    U16(u16),
    /// An `i16` value (type id 3).
    I16(i16),
    /// A `u32` value (type id 4).
    U32(u32),
    /// An `i32` value (type id 5).
    I32(i32),
    /// An `f32` value (type id 6).
    F32(f32),
    /// A boolean (type id 7).
    Bool(bool),
    /// A string (type id 8).
    String(String),
    /// An array (type id 9).
    Array(Array),
    /// A `u64` value (type id 10).
    U64(u64),
    /// An `i64` value (type id 11).
    I64(i64),
    /// An `f64` value (type id 12).
    F64(f64),
}

/// An array value: its element type and its elements (which are arrays again when nested).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Type of every element (all elements of a GGUF array share one type).
    pub elem_type: ValueType,
    /// The elements, in file order.
    pub values: Vec<Value>,
}

impl Value {
    /// The type tag this value is written with.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type, as i128, so callers can range-check without caring how the writer
    /// chose to store it (files in the wild store counts as u32, i32 or u64).
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any numeric type as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    /// The string, when this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, when this is a boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array, when this is an array value.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short human description of the type, e.g. `array[string; 49152]`.
    pub fn type_description(&self) -> String {
        match self {
            Value::Array(a) => format!("array[{}; {}]", a.elem_type, a.values.len()),
            v => v.value_type().name().to_string(),
        }
    }

    /// The value as JSON. Arrays longer than `max_array` (when given) are summarised as
    /// `{"type": "array", "elem_type": ..., "len": N, "head": [first few]}`.
    pub fn to_json(&self, max_array: Option<usize>) -> serde_json::Value {
        use serde_json::{json, Value as J};
        match self {
            Value::U8(v) => json!(v),
            Value::I8(v) => json!(v),
            Value::U16(v) => json!(v),
            Value::I16(v) => json!(v),
            Value::U32(v) => json!(v),
            Value::I32(v) => json!(v),
            Value::U64(v) => json!(v),
            Value::I64(v) => json!(v),
            Value::F32(v) => float_json(f64::from(*v)),
            Value::F64(v) => float_json(*v),
            Value::Bool(v) => json!(v),
            Value::String(s) => J::String(s.clone()),
            Value::Array(a) => match max_array {
                Some(max) if a.values.len() > max => json!({
                    "type": "array",
                    "elem_type": a.elem_type.name(),
                    "len": a.values.len(),
                    "head": a.values.iter().take(8).map(|v| v.to_json(Some(max))).collect::<Vec<_>>(),
                }),
                _ => J::Array(a.values.iter().map(|v| v.to_json(max_array)).collect()),
            },
        }
    }
}

/// JSON has no NaN or infinity: write those as strings rather than fail.
fn float_json(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| serde_json::Value::String(v.to_string()))
}

impl fmt::Display for Value {
    /// Human form; arrays longer than 8 are shortened with their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) => {
                write!(f, "[")?;
                for (i, v) in a.values.iter().take(8).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                if a.values.len() > 8 {
                    write!(f, ", ... ({} {} in all)", a.values.len(), a.elem_type)?;
                }
                write!(f, "]")
            }
        }
    }
}
