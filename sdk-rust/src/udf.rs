//! Rust types ↔ Arrow types for `#[udf]` functions.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow_schema::DataType;

use crate::Error;

/// A Rust argument type of a `#[udf]` function.
pub trait Arg {
    /// The Arrow array it is read from.
    type Array: Array;
    /// The value read from row `i` (borrowing the array for strings).
    type Value<'a>;
    /// Its Arrow type.
    fn data_type() -> DataType;
    /// The argument array, checked.
    fn array(a: &ArrayRef) -> Result<&Self::Array, Error>;
    /// Row `i` (not null).
    fn value(a: &Self::Array, i: usize) -> Self::Value<'_>;
}

/// A Rust result type of a `#[udf]` function.
pub trait Ret {
    /// The builder of the result array.
    type Builder;
    /// Its Arrow type.
    fn data_type() -> DataType;
    /// A builder for `n` rows.
    fn builder(n: usize) -> Self::Builder;
    /// Appends a value.
    fn append(b: &mut Self::Builder, v: Self);
    /// Appends NULL.
    fn append_null(b: &mut Self::Builder);
    /// The result array.
    fn finish(b: Self::Builder) -> ArrayRef;
    /// The result array of `n` non-null values (the fast path when no argument has a
    /// NULL).
    fn collect(values: impl Iterator<Item = Self>, n: usize) -> ArrayRef
    where
        Self: Sized,
    {
        let mut b = Self::builder(n);
        for v in values {
            Self::append(&mut b, v);
        }
        Self::finish(b)
    }
}

fn wrong(expected: &DataType, got: &DataType) -> Error {
    Error::InvalidInput(format!("expected a {expected} argument, got {got}"))
}

macro_rules! primitive {
    ($rust:ty, $arrow:ty, $array:ty, $builder:ty, $dt:expr) => {
        impl Arg for $rust {
            type Array = $array;
            type Value<'a> = $rust;
            fn data_type() -> DataType {
                $dt
            }
            fn array(a: &ArrayRef) -> Result<&$array, Error> {
                a.as_primitive_opt::<$arrow>()
                    .ok_or_else(|| wrong(&$dt, a.data_type()))
            }
            #[inline]
            fn value(a: &$array, i: usize) -> $rust {
                a.value(i)
            }
        }
        impl Ret for $rust {
            type Builder = $builder;
            fn data_type() -> DataType {
                $dt
            }
            fn builder(n: usize) -> $builder {
                <$builder>::with_capacity(n)
            }
            #[inline]
            fn append(b: &mut $builder, v: $rust) {
                b.append_value(v)
            }
            fn append_null(b: &mut $builder) {
                b.append_null()
            }
            fn finish(mut b: $builder) -> ArrayRef {
                Arc::new(b.finish())
            }
            fn collect(values: impl Iterator<Item = $rust>, n: usize) -> ArrayRef {
                let mut v = Vec::with_capacity(n);
                v.extend(values);
                Arc::new(<$array>::from(v))
            }
        }
    };
}

primitive!(
    f64,
    Float64Type,
    Float64Array,
    Float64Builder,
    DataType::Float64
);
primitive!(
    f32,
    Float32Type,
    Float32Array,
    Float32Builder,
    DataType::Float32
);
primitive!(i64, Int64Type, Int64Array, Int64Builder, DataType::Int64);
primitive!(i32, Int32Type, Int32Array, Int32Builder, DataType::Int32);

impl Arg for bool {
    type Array = BooleanArray;
    type Value<'a> = bool;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn array(a: &ArrayRef) -> Result<&BooleanArray, Error> {
        a.as_boolean_opt()
            .ok_or_else(|| wrong(&DataType::Boolean, a.data_type()))
    }
    fn value(a: &BooleanArray, i: usize) -> bool {
        a.value(i)
    }
}

impl Ret for bool {
    type Builder = BooleanBuilder;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn builder(n: usize) -> BooleanBuilder {
        BooleanBuilder::with_capacity(n)
    }
    fn append(b: &mut BooleanBuilder, v: bool) {
        b.append_value(v)
    }
    fn append_null(b: &mut BooleanBuilder) {
        b.append_null()
    }
    fn finish(mut b: BooleanBuilder) -> ArrayRef {
        Arc::new(b.finish())
    }
}

impl Arg for str {
    type Array = StringArray;
    type Value<'a> = &'a str;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn array(a: &ArrayRef) -> Result<&StringArray, Error> {
        a.as_string_opt::<i32>()
            .ok_or_else(|| wrong(&DataType::Utf8, a.data_type()))
    }
    fn value(a: &StringArray, i: usize) -> &str {
        a.value(i)
    }
}

impl Ret for String {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(n: usize) -> StringBuilder {
        StringBuilder::with_capacity(n, n * 8)
    }
    fn append(b: &mut StringBuilder, v: String) {
        b.append_value(v)
    }
    fn append_null(b: &mut StringBuilder) {
        b.append_null()
    }
    fn finish(mut b: StringBuilder) -> ArrayRef {
        Arc::new(b.finish())
    }
}

impl<T: Ret> Ret for Option<T> {
    type Builder = T::Builder;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn builder(n: usize) -> T::Builder {
        T::builder(n)
    }
    fn append(b: &mut T::Builder, v: Option<T>) {
        match v {
            Some(v) => T::append(b, v),
            None => T::append_null(b),
        }
    }
    fn append_null(b: &mut T::Builder) {
        T::append_null(b)
    }
    fn finish(b: T::Builder) -> ArrayRef {
        T::finish(b)
    }
}
