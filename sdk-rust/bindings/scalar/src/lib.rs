//! Guest bindings of the `scalar-udf` world, generated from `wit/`. Each world has its
//! own crate because the generated export macros live at the crate root. Use them
//! through `fungi-sdk`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "scalar-udf",
    pub_export_macro: true,
    export_macro_name: "export_scalar_udf",
    default_bindings_module: "fungi_sdk::scalar_bindings",
});
