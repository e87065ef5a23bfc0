//! Components that do not fit the contract are refused with a message that says why.

use fungi_plugin::{AggregateUdf, ScalarUdf, TenantLimits};
use fungi_plugin_artifacts::{HLL, HOSTILE_FORBIDDEN_IMPORT, HOSTILE_OLD_CONTRACT, STRINGS_GEO};

use crate::{host, load, tenant};

#[test]
fn an_older_contract_version_is_refused_naming_both_versions() {
    let err = host()
        .load_file(std::path::Path::new(HOSTILE_OLD_CONTRACT))
        .unwrap_err();
    assert_eq!(err.code(), "PLUGIN_INCOMPATIBLE");
    let text = err.to_string();
    assert!(
        text.contains("fungi:plugin@0.0.9") && text.contains("fungi:plugin@0.1.0"),
        "{text}"
    );
}

#[test]
fn an_import_the_host_does_not_offer_is_refused() {
    let err = host()
        .load_file(std::path::Path::new(HOSTILE_FORBIDDEN_IMPORT))
        .unwrap_err();
    assert_eq!(err.code(), "PLUGIN_FORBIDDEN_IMPORT", "{err}");
    assert!(err.to_string().contains("evil:outside/doorbell"), "{err}");
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let err = host().load("junk", b"not wasm at all").unwrap_err();
    assert_eq!(err.code(), "PLUGIN_LOAD", "{err}");
    assert!(
        err.to_string()
            .starts_with("plugin 'junk' cannot be loaded"),
        "{err}"
    );
}

#[test]
fn a_plugin_of_another_kind_is_refused() {
    let t = tenant("kinds", TenantLimits::default());
    let err = ScalarUdf::new(load(HLL), t.clone(), "hll_distinct", Vec::new()).unwrap_err();
    assert!(
        err.to_string()
            .contains("is an aggregate function library, not a scalar function library"),
        "{err}"
    );
    let err = AggregateUdf::new(load(STRINGS_GEO), t, "gcd", Vec::new()).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_WRONG_KIND");
}
