//! Guest bindings of the `table-udf` world, generated from `wit/`. Each world has its
//! own crate because the generated export macros live at the crate root. Use them
//! through `fungi-sdk`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "table-udf",
    pub_export_macro: true,
    export_macro_name: "export_table_udf",
    default_bindings_module: "fungi_sdk::table_bindings",
});
