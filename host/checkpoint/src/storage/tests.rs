use std::fs;
use std::path::Path;

use super::*;
use crate::layout::{SST_LIST, STATE_DIR};

fn snapshot(tag: u8) -> TaskSnapshot {
    TaskSnapshot {
        source: Some(vec![tag]),
        operators: vec![("window".into(), vec![tag; 10])],
    }
}

fn key(s: u32) -> TaskKey {
    TaskKey {
        chain: "src".into(),
        subtask: s,
    }
}

#[test]
fn a_written_checkpoint_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::new(dir.path());
    storage
        .write(
            "job",
            1,
            0,
            false,
            &[(key(0), 2, snapshot(1)), (key(1), 2, snapshot(2))],
            5,
        )
        .unwrap();
    let c = storage.latest().unwrap().unwrap();
    assert_eq!(c.id(), 1);
    let s = c.operator_state("window", 1, 2).unwrap();
    assert_eq!(s.states, vec![(1, vec![2; 10])]);
    // At another parallelism every old subtask's state is handed over.
    let s = c.source_state("src", 0, 3).unwrap();
    assert_eq!(s.old_parallelism, 2);
    assert_eq!(s.states, vec![(0, vec![1]), (1, vec![2])]);
}

#[test]
fn a_damaged_or_unfinished_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::new(dir.path());
    for id in 1..=3 {
        storage
            .write("job", id, 0, false, &[(key(0), 1, snapshot(id as u8))], 1)
            .unwrap();
    }
    // 3: a state file flipped; 2: fine. An unfinished 4 has no metadata.
    let file = dir.path().join("chk-3").join("src#0.state");
    let mut bytes = fs::read(&file).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    fs::write(&file, bytes).unwrap();
    fs::create_dir_all(dir.path().join("chk-4")).unwrap();
    let (c, skipped) = storage.latest_with_skipped().unwrap();
    assert_eq!(c.unwrap().id(), 2);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].contains("chk-4") && skipped[0].contains("never completed"));
    assert!(
        skipped[1].contains("does not match its checksum"),
        "{}",
        skipped[1]
    );
    // A missing file is named too.
    fs::remove_file(dir.path().join("chk-2").join("src#0.state")).unwrap();
    let (c, skipped) = storage.latest_with_skipped().unwrap();
    assert_eq!(c.unwrap().id(), 1);
    assert!(
        skipped[2].contains("cannot read src#0.state"),
        "{}",
        skipped[2]
    );
}

#[test]
fn garbage_collection_keeps_the_shared_files_retained_checkpoints_list() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::new(dir.path());
    let store = dir.path().join(STATE_DIR).join("op#0");
    fs::create_dir_all(store.join("sst")).unwrap();
    let private = |id: u64, ssts: &[&str]| {
        let p = store.join(format!("chk-{id}"));
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join(SST_LIST), ssts.join("\n")).unwrap();
    };
    for name in ["a.sst", "b.sst", "c.sst"] {
        fs::write(store.join("sst").join(name), b"x").unwrap();
    }
    private(1, &["a.sst"]);
    private(2, &["b.sst"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    for id in 1..=2 {
        storage
            .write("job", id, now(), false, &[(key(0), 1, snapshot(1))], 1)
            .unwrap();
    }
    // A file copied after the newest checkpoint was triggered, listed by no one yet.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(store.join("sst").join("d.sst"), b"x").unwrap();
    storage.retain(1).unwrap();
    let left: Vec<String> = {
        let mut v: Vec<String> = fs::read_dir(store.join("sst"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // a: only checkpoint 1 (deleted) needed it; c: nobody; d: too new to judge.
    assert_eq!(left, ["b.sst", "d.sst"]);
    assert!(!store.join("chk-1").exists() && store.join("chk-2").exists());
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes checkpoint `id` with one subtask's snapshot tagged `id`, triggered now.
fn write_now(storage: &CheckpointStorage, id: u64) {
    storage
        .write(
            "job",
            id,
            now(),
            false,
            &[(key(0), 1, snapshot(id as u8))],
            1,
        )
        .unwrap();
}

/// A fake RocksDB store's files for checkpoint `id` under `root`: shared `ssts`,
/// listed by its private directory.
fn store_files(root: &Path, id: u64, ssts: &[&str]) {
    let store = root.join(STATE_DIR).join("op#0");
    fs::create_dir_all(store.join("sst")).unwrap();
    for sst in ssts {
        fs::write(store.join("sst").join(sst), sst.as_bytes()).unwrap();
    }
    let private = store.join(format!("chk-{id}"));
    fs::create_dir_all(&private).unwrap();
    fs::write(private.join(SST_LIST), ssts.join("\n")).unwrap();
    fs::write(private.join("MANIFEST"), format!("manifest {id}")).unwrap();
}

#[test]
fn checkpoints_in_object_storage_restore_on_a_machine_without_local_files() {
    let server = fungi_testkit::S3Server::start(&["ckpt"]);
    let url = Path::new("s3://ckpt/jobs/a");
    let local = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::open(url, &server.options())
        .unwrap()
        .with_local_dir(local.path());
    assert_eq!(storage.location(), "s3://ckpt/jobs/a");
    for id in 1..=4u64 {
        // Each checkpoint keeps one older shared file and adds one.
        let ssts = [format!("{}.sst", id.max(2) - 1), format!("{id}.sst")];
        store_files(local.path(), id, &[&ssts[0], &ssts[1]]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_now(&storage, id);
        storage.retain(2).unwrap();
    }
    let bucket = server.root().join("ckpt/jobs/a");
    let mut objects: Vec<String> = crate::remote::local_files(&bucket)
        .unwrap()
        .into_iter()
        .map(|(f, _)| f)
        .filter(|f| !f.contains(".s3s"))
        .collect();
    objects.sort();
    // Two checkpoints kept; shared files only those they list.
    assert!(
        objects
            .iter()
            .all(|f| !f.starts_with("chk-1/") && !f.starts_with("chk-2/")),
        "{objects:?}"
    );
    assert!(
        objects.contains(&"chk-4/_metadata".to_string()),
        "{objects:?}"
    );
    let ssts: Vec<&String> = objects.iter().filter(|f| f.contains("/sst/")).collect();
    assert_eq!(ssts.len(), 3, "{objects:?}");

    // Another machine: nothing local; the newest checkpoint is downloaded with the
    // store files it needs.
    let fresh = tempfile::tempdir().unwrap();
    let restored = CheckpointStorage::open(url, &server.options())
        .unwrap()
        .with_local_dir(fresh.path());
    assert_eq!(restored.ids().unwrap(), vec![3, 4]);
    let c = restored.latest().unwrap().unwrap();
    assert_eq!(c.id(), 4);
    assert_eq!(
        c.operator_state("window", 0, 1).unwrap().states,
        vec![(0, vec![4; 10])]
    );
    let store = fresh.path().join(STATE_DIR).join("op#0");
    assert_eq!(
        fs::read_to_string(store.join("chk-4/MANIFEST")).unwrap(),
        "manifest 4"
    );
    assert_eq!(
        fs::read_to_string(store.join("sst/4.sst")).unwrap(),
        "4.sst"
    );
    assert!(store.join("sst/3.sst").exists());
}

#[test]
fn a_damaged_object_falls_back_to_the_previous_checkpoint() {
    let server = fungi_testkit::S3Server::start(&["ckpt"]);
    let url = Path::new("s3://ckpt/b");
    let local = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::open(url, &server.options())
        .unwrap()
        .with_local_dir(local.path());
    for id in 1..=3 {
        write_now(&storage, id);
    }
    // 3: its state object damaged in the bucket; 2: its _metadata gone.
    let bucket = server.root().join("ckpt/b");
    let state = crate::remote::local_files(&bucket.join("chk-3"))
        .unwrap()
        .into_iter()
        .find(|(f, _)| f.ends_with(".state"))
        .unwrap()
        .1;
    let mut bytes = fs::read(&state).unwrap();
    bytes[3] ^= 0xff;
    fs::write(&state, bytes).unwrap();
    fs::remove_file(bucket.join("chk-2/_metadata")).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let restored = CheckpointStorage::open(url, &server.options())
        .unwrap()
        .with_local_dir(fresh.path());
    let (c, skipped) = restored.latest_with_skipped().unwrap();
    assert_eq!(c.unwrap().id(), 1);
    assert!(
        skipped[0].contains("does not match its checksum"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains("never completed") && skipped[1].contains("s3://ckpt/b/chk-2"),
        "{skipped:?}"
    );
}

#[test]
fn bad_object_storage_settings_are_named() {
    let err = CheckpointStorage::open(Path::new("s3:///nobucket"), &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("no bucket"), "{err}");
    let options = [("s3.colour".to_string(), "red".to_string())].into();
    let err = CheckpointStorage::open(Path::new("s3://b/p"), &options).unwrap_err();
    assert!(
        err.to_string().contains("unknown option 's3.colour'"),
        "{err}"
    );
    // Nothing listens there: the error names the location.
    let options = [(
        "s3.endpoint".to_string(),
        format!("http://127.0.0.1:{}", fungi_testkit::free_port()),
    )]
    .into();
    let storage = CheckpointStorage::open(Path::new("s3://b/p"), &options)
        .unwrap()
        .with_local_dir(tempfile::tempdir().unwrap().path());
    let err = storage.ids().unwrap_err();
    assert!(err.to_string().contains("s3://b/p"), "{err}");
}

#[test]
fn retention_keeps_the_newest_complete_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::new(dir.path());
    for id in 1..=5 {
        storage
            .write("job", id, 0, false, &[(key(0), 1, snapshot(1))], 1)
            .unwrap();
    }
    fs::create_dir_all(dir.path().join("chk-6")).unwrap();
    storage.retain(2).unwrap();
    assert_eq!(storage.ids().unwrap(), vec![4, 5, 6]);
}
