//! The contract is versioned: `wit/contract.lock` records the version and a digest of
//! `wit/plugin.wit`; changing the contract without bumping its version fails here.

#[test]
fn a_changed_contract_has_a_new_version() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");
    let wit = std::fs::read(format!("{root}/plugin.wit")).unwrap();
    let digest = blake3::hash(&wit).to_hex().to_string();
    let lock = std::fs::read_to_string(format!("{root}/contract.lock")).unwrap();
    let (version, recorded) = lock.trim().split_once(' ').expect("'<version> <blake3>'");
    assert_eq!(
        version,
        fungi_plugin::CONTRACT_VERSION,
        "wit/contract.lock is for another version than the host implements"
    );
    assert_eq!(
        recorded, digest,
        "wit/plugin.wit changed but its version did not: bump `package fungi:plugin@...` \
         (and CONTRACT_VERSION), then write '<new version> {digest}' to wit/contract.lock"
    );
    assert!(
        String::from_utf8_lossy(&wit).contains(&format!("package fungi:plugin@{version};")),
        "the package line names the locked version"
    );
}
