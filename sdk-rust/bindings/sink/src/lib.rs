//! Guest bindings of the `sink-connector` world, generated from `wit/`. Use them through
//! `fungi-sdk`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "sink-connector",
    pub_export_macro: true,
    export_macro_name: "export_sink_connector",
    default_bindings_module: "fungi_sdk::sink_bindings",
});
