//! Guest bindings of the `source-connector` world, generated from `wit/`. Use them through
//! `fungi-sdk`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "source-connector",
    pub_export_macro: true,
    export_macro_name: "export_source_connector",
    default_bindings_module: "fungi_sdk::source_bindings",
});
