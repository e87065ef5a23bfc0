//! Guest bindings of the `aggregate-udf` world, generated from `wit/`. Use them through
//! `fungi-sdk`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "aggregate-udf",
    pub_export_macro: true,
    export_macro_name: "export_aggregate_udf",
    default_bindings_module: "fungi_sdk::aggregate_bindings",
});
