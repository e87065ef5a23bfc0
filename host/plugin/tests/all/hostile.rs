//! Hostile plugins are stopped within their tenant's limits; the host, the next call and
//! other tenants carry on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::Int64Type;
use fungi_plugin::{PluginError, ScalarUdf, TenantLimits};
use fungi_plugin_artifacts::{HOSTILE_EVIL, STRINGS_GEO};

use crate::{load, tenant};

fn ints(n: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(0..n as i64))
}

fn strings(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn evil(function: &str, limits: TenantLimits) -> ScalarUdf {
    ScalarUdf::new(
        load(HOSTILE_EVIL),
        tenant(function, limits),
        function,
        Vec::new(),
    )
    .unwrap()
}

fn limit(err: PluginError, what: &str) {
    assert_eq!(err.code(), "PLUGIN_LIMIT", "{err}");
    assert!(err.to_string().contains(what), "{err}");
}

#[test]
fn an_infinite_loop_is_interrupted_at_the_call_time_limit() {
    let limits = TenantLimits {
        call_timeout: Some(Duration::from_millis(100)),
        ..TenantLimits::default()
    };
    let f = evil("spin", limits);
    let start = Instant::now();
    let err = f.call(&[ints(1)], 1).unwrap_err();
    let took = start.elapsed();
    limit(err, "call time limit of 100 ms exceeded");
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    // The next call gets a fresh instance (and is stopped again).
    limit(f.call(&[ints(1)], 1).unwrap_err(), "call time limit");
}

#[test]
fn a_host_for_trusted_plugins_refuses_a_call_timeout_it_cannot_enforce() {
    let host = fungi_plugin::PluginHost::new(fungi_plugin::HostOptions {
        uninterruptible: true,
        ..Default::default()
    })
    .unwrap();
    let plugin = host.load_file(std::path::Path::new(STRINGS_GEO)).unwrap();
    let err = ScalarUdf::new(
        plugin.clone(),
        tenant("timed", TenantLimits::default()),
        "gcd",
        Vec::new(),
    )
    .and_then(|f| f.call(&[ints(3), ints(3)], 3))
    .unwrap_err();
    limit(err, "call time limit of 1000 ms cannot be enforced");
    let untimed = TenantLimits {
        call_timeout: None,
        ..TenantLimits::default()
    };
    let f = ScalarUdf::new(plugin, tenant("untimed", untimed), "gcd", Vec::new()).unwrap();
    let out = f.call(&[ints(3), ints(3)], 3).unwrap();
    assert_eq!(out.as_primitive::<Int64Type>().values(), &[0, 1, 2]);
}

#[test]
fn a_memory_bomb_hits_the_instance_memory_limit() {
    let limits = TenantLimits {
        memory_per_instance: 32 << 20,
        ..TenantLimits::default()
    };
    let t = tenant("bomb", limits);
    let f = ScalarUdf::new(load(HOSTILE_EVIL), t.clone(), "bomb", Vec::new()).unwrap();
    let err = f.call(&[ints(1)], 1).unwrap_err();
    // The breach is typed: which limit, its value and what the plugin asked for.
    match &err {
        PluginError::Limit { limit, .. } => {
            assert_eq!(limit.kind, fungi_plugin::LimitKind::Memory);
            assert_eq!(limit.limit, Some(32 << 20));
            assert!(limit.value.is_some_and(|v| v > 32 << 20), "{limit:?}");
        }
        other => panic!("not a limit: {other}"),
    }
    limit(err, "memory limit of 32 MiB per instance exceeded");
    // The discarded instance gave its memory back to the tenant.
    assert_eq!(t.live_instances(), 0);
    assert_eq!(t.memory_in_use(), 0);
}

#[test]
fn deep_recursion_is_stopped() {
    // The guest overflows its own stack (in linear memory, below address 0) or the
    // engine's; either way the call traps and the next one gets a fresh instance.
    let f = evil("recurse", TenantLimits::default());
    for _ in 0..2 {
        let err = f.call(&[ints(1)], 1).unwrap_err();
        assert!(
            matches!(err.code(), "PLUGIN_TRAP" | "PLUGIN_LIMIT"),
            "{err}"
        );
        assert!(err.to_string().contains("'recurse'"), "{err}");
    }
}

#[test]
fn a_panic_is_a_trap_with_the_plugins_message() {
    let f = evil("boom", TenantLimits::default());
    let err = f.call(&[ints(1)], 1).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_TRAP", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("'boom' trapped") && text.contains("boom at 0"),
        "{text}"
    );
}

#[test]
fn oversized_output_is_refused() {
    let limits = TenantLimits {
        max_output_bytes: 4 << 20,
        ..TenantLimits::default()
    };
    let f = evil("flood", limits);
    let err = f.call(&[ints(8)], 8).unwrap_err();
    assert!(
        matches!(&err, PluginError::Limit { limit, .. }
            if limit.kind == fungi_plugin::LimitKind::Output && limit.limit == Some(4 << 20)),
        "{err:?}"
    );
    limit(err, "is over the output limit of 4194304 bytes per call");
}

#[test]
fn printing_is_captured_and_capped() {
    let f = evil("chatty", TenantLimits::default());
    let out = f.call(&[ints(3)], 3).unwrap();
    assert_eq!(
        out.as_primitive::<Int64Type>().values().to_vec(),
        vec![0, 1, 2]
    );
}

#[test]
fn no_network_files_or_environment_unless_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let f = evil("connect", TenantLimits::default());
    let out = f.call(&[strings(&[&addr, "10.1.2.3:80"])], 2).unwrap();
    for v in out.as_string::<i32>().iter() {
        assert!(v.unwrap().starts_with("refused"), "{v:?}");
    }
    // Allow-listed: the same address connects.
    let granted = TenantLimits {
        network_allow: vec![addr.clone()],
        ..TenantLimits::default()
    };
    let f = evil("connect", granted);
    let out = f.call(&[strings(&[&addr, "10.1.2.3:80"])], 2).unwrap();
    let out: Vec<_> = out
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert_eq!(out[0], "connected");
    assert!(out[1].starts_with("refused"), "{out:?}");

    let f = evil("read_file", TenantLimits::default());
    let out = f
        .call(&[strings(&["/etc/passwd", "../../etc/passwd"])], 2)
        .unwrap();
    for v in out.as_string::<i32>().iter() {
        assert!(v.unwrap().starts_with("refused"), "{v:?}");
    }
    // A granted directory is readable, but nothing above it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), "hello").unwrap();
    let granted = TenantLimits {
        directories: vec![(dir.path().to_path_buf(), "/data".into(), false)],
        ..TenantLimits::default()
    };
    let f = evil("read_file", granted);
    let out = f
        .call(&[strings(&["/data/ok.txt", "/data/../../etc/passwd"])], 2)
        .unwrap();
    let out: Vec<_> = out
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert_eq!(out[0], "read 5 bytes");
    assert!(out[1].starts_with("refused"), "{out:?}");

    let f = evil("env_count", TenantLimits::default());
    let out = f.call(&[ints(1)], 1).unwrap();
    assert_eq!(out.as_primitive::<Int64Type>().value(0), 0);
}

#[test]
fn the_instance_limit_bounds_a_tenant() {
    let limits = TenantLimits {
        max_instances: 1,
        ..TenantLimits::default()
    };
    let t = tenant("few", limits);
    let plugin = load(STRINGS_GEO);
    let a = ScalarUdf::new(plugin.clone(), t.clone(), "gcd", Vec::new()).unwrap();
    let b = ScalarUdf::new(plugin, t.clone(), "slugify", Vec::new()).unwrap();
    a.call(&[ints(2), ints(2)], 2).unwrap();
    // `a` keeps its idle instance; `b` needs a second one.
    let err = b.call(&[strings(&["x"])], 1).unwrap_err();
    limit(err, "maximum of 1 plugin instances");
}

#[test]
fn a_runaway_tenant_does_not_stop_another_tenant() {
    // PluginTenant A spins (each call stopped at 200 ms) on another thread while tenant B's
    // calls go on; B's calls stay fast.
    let spin = evil(
        "spin",
        TenantLimits {
            call_timeout: Some(Duration::from_millis(200)),
            ..TenantLimits::default()
        },
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let runaway = std::thread::spawn(move || {
        let mut stopped = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(spin.call(&[ints(1)], 1).is_err());
            stopped += 1;
        }
        stopped
    });
    let gcd = ScalarUdf::new(
        load(STRINGS_GEO),
        tenant("victim", TenantLimits::default()),
        "gcd",
        Vec::new(),
    )
    .unwrap();
    let start = Instant::now();
    for _ in 0..50 {
        gcd.call(&[ints(8192), ints(8192)], 8192).unwrap();
    }
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(runaway.join().unwrap() >= 1);
    // A generous bound: 50 calls of 8192 rows take a few ms alone.
    assert!(took < Duration::from_secs(5), "the victim took {took:?}");
}

#[test]
fn fuel_metering_stops_a_loop_deterministically() {
    let host = fungi_plugin::PluginHost::new(fungi_plugin::HostOptions {
        fuel: true,
        ..Default::default()
    })
    .unwrap();
    let plugin = host.load_file(std::path::Path::new(HOSTILE_EVIL)).unwrap();
    let limits = TenantLimits {
        fuel_per_call: Some(5_000_000),
        ..TenantLimits::default()
    };
    let f = ScalarUdf::new(plugin, tenant("fuel", limits), "spin", Vec::new()).unwrap();
    limit(
        f.call(&[ints(1)], 1).unwrap_err(),
        "fuel limit of 5000000 per call exceeded",
    );
}

#[test]
fn a_sleeping_call_is_stopped_at_its_time_limit() {
    let limits = TenantLimits {
        call_timeout: Some(Duration::from_millis(200)),
        ..TenantLimits::default()
    };
    let f = evil("nap", limits);
    let start = Instant::now();
    let err = f.call(&[ints(1)], 1);
    // ints(1) is [0]: a nap of 0 ms returns.
    assert!(err.is_ok(), "{err:?}");
    let naps: ArrayRef = Arc::new(Int64Array::from(vec![60_000]));
    let err = f.call(&[naps], 1).unwrap_err();
    let took = start.elapsed();
    limit(err, "call time limit of 200 ms exceeded");
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
}

#[test]
fn a_blocking_read_on_an_allowed_socket_is_stopped_at_its_time_limit() {
    // A service that accepts and then says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(5));
        drop(conn);
    });
    let limits = TenantLimits {
        call_timeout: Some(Duration::from_millis(300)),
        network_allow: vec![addr.clone()],
        ..TenantLimits::default()
    };
    let f = evil("hang_read", limits);
    let start = Instant::now();
    let err = f.call(&[strings(&[&addr])], 1).unwrap_err();
    let took = start.elapsed();
    limit(err, "call time limit of 300 ms exceeded");
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    held.join().unwrap();
}

#[test]
fn the_cpu_budget_holds_across_a_tenants_concurrent_calls() {
    // 100 ms of CPU per second for the tenant; two threads each keep asking for
    // 400 ms-long calls for three seconds.
    let limits = TenantLimits {
        cpu_budget_per_second: Duration::from_millis(100),
        call_timeout: Some(Duration::from_secs(5)),
        ..TenantLimits::default()
    };
    let t = tenant("budget", limits);
    let f = Arc::new(ScalarUdf::new(load(HOSTILE_EVIL), t.clone(), "burn", Vec::new()).unwrap());
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || {
                let burn: ArrayRef = Arc::new(Int64Array::from(vec![400]));
                while start.elapsed() < run {
                    f.call(std::slice::from_ref(&burn), 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    let used = t.cpu_time().as_secs_f64();
    eprintln!(
        "CPU budget 100 ms/s: used {:.0} ms of CPU in {seconds:.2} s ({:.0} ms/s), throttled {:?}",
        used * 1000.0,
        used * 1000.0 / seconds,
        t.throttled()
    );
    // Within 10 % of the budget, plus the ticks of the calls running when it ran out.
    assert!(
        used <= 0.1 * seconds.ceil() * 1.1 + 0.02,
        "used {used} s in {seconds} s"
    );
    assert!(t.throttled() > Duration::ZERO);
}

#[test]
fn host_log_floods_are_capped_per_call_and_per_second() {
    let t = tenant("shout", TenantLimits::default());
    let f = ScalarUdf::new(load(HOSTILE_EVIL), t.clone(), "shout", Vec::new()).unwrap();
    let n: ArrayRef = Arc::new(Int64Array::from(vec![40]));
    let start = Instant::now();
    f.call(&[n], 1).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    // 40 lines of 2 MiB each: all but a few KiB dropped, and counted.
    assert!(
        t.dropped_log_bytes() > 79 << 20,
        "{}",
        t.dropped_log_bytes()
    );
}

fn forger(function: &str) -> ScalarUdf {
    ScalarUdf::new(
        load(fungi_plugin_artifacts::HOSTILE_FORGER),
        tenant(function, TenantLimits::default()),
        function,
        Vec::new(),
    )
    .unwrap()
}

#[test]
fn compressed_and_forged_results_are_refused_and_the_host_stays_up() {
    // What arrow-rs writes with LZ4 on: refused, with the reason.
    let err = forger("compressed").call(&[ints(10)], 10).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_CONTRACT", "{err}");
    assert!(
        err.to_string().contains("compressed Arrow IPC is refused"),
        "{err}"
    );
    // A compressed body that claims a terabyte once uncompressed: refused before any
    // allocation (the host process would abort otherwise).
    let err = forger("inflated").call(&[ints(10)], 10).unwrap_err();
    assert!(
        err.to_string().contains("compressed Arrow IPC is refused"),
        "{err}"
    );
    // Buffers past the end of what arrived.
    let err = forger("overreach").call(&[ints(10)], 10).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_CONTRACT", "{err}");
    assert!(err.to_string().contains("runs past the end"), "{err}");
}

#[test]
fn every_linear_memory_and_table_counts_towards_the_instance_limit() {
    // A limit just above what the evil plugin needs to start: a memory bomb is stopped
    // with the exact figures, never "a limit of 32 MiB, asked for 32 MiB".
    let limits = TenantLimits {
        memory_per_instance: (32 << 20) + (1 << 19),
        ..TenantLimits::default()
    };
    let err = evil("bomb", limits).call(&[ints(1)], 1).unwrap_err();
    limit(err, "memory limit of 32.50 MiB per instance exceeded");
}

#[test]
fn open_files_and_sockets_are_limited_per_instance_and_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let limits = TenantLimits {
        directories: vec![(dir.path().to_path_buf(), "/data".into(), true)],
        max_host_resources_per_instance: 64,
        ..TenantLimits::default()
    };
    let t = tenant("hoard", limits);
    let f = ScalarUdf::new(load(HOSTILE_EVIL), t.clone(), "hoard_files", Vec::new()).unwrap();
    let err = f.call(&[strings(&["/data"])], 1).unwrap_err();
    limit(err, "host resource limit reached: at most 64 open files");
    // The instance is gone, and what it held was given back.
    assert_eq!(t.host_resources(), 0);
    assert_eq!(t.live_instances(), 0);
    // Sockets count the same way.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts until the plugin is done (bounded by a minute on a loaded machine).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60)
            && !stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            if let Ok((c, _)) = listener.accept() {
                held.push(c);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let limits = TenantLimits {
        network_allow: vec![addr.clone()],
        max_host_resources: 40,
        ..TenantLimits::default()
    };
    let t = tenant("sockets", limits);
    let f = ScalarUdf::new(load(HOSTILE_EVIL), t.clone(), "hoard_sockets", Vec::new()).unwrap();
    let err = f.call(&[strings(&[&addr])], 1).unwrap_err();
    limit(err, "40 for the tenant");
    assert_eq!(t.host_resources(), 0);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    accepting.join().unwrap();
}

#[test]
fn links_in_a_granted_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = TenantLimits {
        directories: vec![(dir.path().to_path_buf(), "/data".into(), true)],
        ..TenantLimits::default()
    };
    let f = evil("link_out", limits);
    let out = f.call(&[strings(&["/data"])], 1).unwrap();
    let text = out.as_string::<i32>().value(0).to_string();
    assert!(
        text.contains("hard link refused") && text.contains("symlink refused"),
        "{text}"
    );
    assert!(!dir.path().join("hard").exists());
    assert!(std::fs::symlink_metadata(dir.path().join("soft")).is_err());
}
