//! `#[fungi_sdk::udf]`: a row-style Rust function becomes a vectorized Fungi scalar
//! function.
//!
//! ```ignore
//! #[fungi_sdk::udf]
//! fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 { ... }
//! ```
//!
//! generates a unit struct `haversine` (the function itself stays, renamed) that
//! implements `fungi_sdk::ScalarFunction`: the argument and result Arrow types come from
//! the Rust types, the loop over rows is generated, and a row with a NULL argument gives
//! NULL without calling the function. Options: `#[udf(name = "sql_name")]`,
//! `#[udf(volatile)]`.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, ItemFn, Pat, ReturnType, Type, parse_macro_input};

/// Turns a row-style function into a `ScalarFunction` (see the crate docs).
#[proc_macro_attribute]
pub fn udf(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let mut sql_name = func.sig.ident.to_string();
    let mut volatile = false;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let v: syn::LitStr = meta.value()?.parse()?;
            sql_name = v.value();
            Ok(())
        } else if meta.path.is_ident("volatile") {
            volatile = true;
            Ok(())
        } else {
            Err(meta.error("expected `name = \"...\"` or `volatile`"))
        }
    });
    parse_macro_input!(attr with parser);
    let ident = func.sig.ident.clone();
    let inner = format_ident!("__{}_row", ident);
    let mut row_fn = func.clone();
    row_fn.sig.ident = inner.clone();
    let vis = &func.vis;
    // Argument types: `&str` is read as `str`.
    let mut arg_types = Vec::new();
    for input in &func.sig.inputs {
        let FnArg::Typed(pt) = input else {
            return syn::Error::new_spanned(input, "a UDF takes no `self`")
                .to_compile_error()
                .into();
        };
        if !matches!(*pt.pat, Pat::Ident(_)) {
            return syn::Error::new_spanned(&pt.pat, "use plain argument names")
                .to_compile_error()
                .into();
        }
        let ty = match &*pt.ty {
            Type::Reference(r) => (*r.elem).clone(),
            other => other.clone(),
        };
        arg_types.push(ty);
    }
    let ret: Type = match &func.sig.output {
        ReturnType::Type(_, t) => (**t).clone(),
        ReturnType::Default => {
            return syn::Error::new_spanned(&func.sig, "a UDF returns a value")
                .to_compile_error()
                .into();
        }
    };
    let n = arg_types.len();
    let idx: Vec<syn::Index> = (0..n).map(syn::Index::from).collect();
    let arrays: Vec<syn::Ident> = (0..n).map(|i| format_ident!("a{}", i)).collect();
    let volatility = if volatile {
        quote!(::fungi_sdk::Volatility::Volatile)
    } else {
        quote!(::fungi_sdk::Volatility::Immutable)
    };
    let rows_expr = if n == 0 {
        quote!(rows)
    } else {
        quote!(args[0].len())
    };
    let expanded = quote! {
        #row_fn

        #[allow(non_camel_case_types)]
        #[doc = concat!("The scalar function `", #sql_name, "`.")]
        #vis struct #ident;

        impl ::fungi_sdk::ScalarFunction for #ident {
            fn name(&self) -> &str {
                #sql_name
            }
            fn arguments(&self) -> ::std::vec::Vec<::fungi_sdk::arrow_schema::DataType> {
                vec![#(<#arg_types as ::fungi_sdk::udf::Arg>::data_type()),*]
            }
            fn returns(&self) -> ::fungi_sdk::arrow_schema::DataType {
                <#ret as ::fungi_sdk::udf::Ret>::data_type()
            }
            fn volatility(&self) -> ::fungi_sdk::Volatility {
                #volatility
            }
            fn call(
                &self,
                args: &[::fungi_sdk::arrow_array::ArrayRef],
                rows: usize,
            ) -> ::std::result::Result<::fungi_sdk::arrow_array::ArrayRef, ::fungi_sdk::Error> {
                let _ = rows;
                if args.len() != #n {
                    return Err(::fungi_sdk::Error::InvalidInput(format!(
                        "{} takes {} arguments, got {}", #sql_name, #n, args.len()
                    )));
                }
                #(let #arrays = <#arg_types as ::fungi_sdk::udf::Arg>::array(&args[#idx])?;)*
                let n = #rows_expr;
                if true #(&& ::fungi_sdk::arrow_array::Array::null_count(#arrays) == 0)* {
                    // No NULLs: no per-row checks, values collected straight into a vector.
                    return Ok(<#ret as ::fungi_sdk::udf::Ret>::collect(
                        (0..n).map(|i| #inner(#(<#arg_types as ::fungi_sdk::udf::Arg>::value(#arrays, i)),*)),
                        n,
                    ));
                }
                let mut out = <#ret as ::fungi_sdk::udf::Ret>::builder(n);
                for i in 0..n {
                    if false #(|| ::fungi_sdk::arrow_array::Array::is_null(#arrays, i))* {
                        <#ret as ::fungi_sdk::udf::Ret>::append_null(&mut out);
                        continue;
                    }
                    let v = #inner(#(<#arg_types as ::fungi_sdk::udf::Arg>::value(#arrays, i)),*);
                    <#ret as ::fungi_sdk::udf::Ret>::append(&mut out, v);
                }
                Ok(<#ret as ::fungi_sdk::udf::Ret>::finish(out))
            }
        }
    };
    expanded.into()
}
