//! Guest bindings of `fungi:plugin/host` alone: logging, metrics and configuration,
//! which every world imports. A world of its own (declared inline, importing only the
//! host interface) so that calling the host from any kind of plugin does not pull in
//! the description of another kind's exports. Use them through `fungi_sdk::host`.

wit_bindgen::generate!({
    inline: r#"
        package fungi:sdk-host;

        world host-imports {
            import fungi:plugin/host@0.1.0;
        }
    "#,
    path: "../../../wit",
    generate_all,
});
