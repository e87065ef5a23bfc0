//! Every way a plugin can misbehave, one function each. The host must stop each one
//! within its tenant's limit and keep running.

use std::hint::black_box;

/// CPU: never returns.
#[fungi_sdk::udf]
fn spin(x: i64) -> i64 {
    let mut v = x;
    loop {
        v = black_box(v.wrapping_mul(31).wrapping_add(7));
    }
}

/// Memory: allocates until refused.
#[fungi_sdk::udf]
fn bomb(x: i64) -> i64 {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![x as u8; 1 << 20]);
        black_box(&hoard);
    }
}

#[allow(unconditional_recursion)]
fn deeper(n: u64) -> u64 {
    let pad = black_box([n; 16]);
    black_box(deeper(n + 1)) + pad[3]
}

/// Stack: recurses without end.
#[fungi_sdk::udf]
fn recurse(x: i64) -> i64 {
    deeper(x as u64) as i64
}

/// Panics.
#[fungi_sdk::udf]
fn boom(x: i64) -> i64 {
    if black_box(true) {
        panic!("boom at {x}");
    }
    x
}

/// Output: one MiB per row.
#[fungi_sdk::udf]
fn flood(x: i64) -> String {
    "x".repeat((1 << 20) + (x as usize & 1))
}

/// Logs: prints far more than the capture keeps, then returns normally.
#[fungi_sdk::udf]
fn chatty(x: i64) -> i64 {
    for i in 0..10_000 {
        println!("chatty line {i} for {x}");
    }
    x
}

/// Network: connects to `addr` (`ip:port`); says what happened.
#[fungi_sdk::udf]
fn connect(addr: &str) -> String {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("refused: {e}"),
    }
}

/// Files: reads `path`; says what happened.
#[fungi_sdk::udf]
fn read_file(path: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => format!("read {} bytes", s.len()),
        Err(e) => format!("refused: {e}"),
    }
}

/// Environment: how many variables the plugin can see.
#[fungi_sdk::udf]
fn env_count(x: i64) -> i64 {
    black_box(x);
    std::env::vars().count() as i64
}

/// Time: sleeps `ms` milliseconds in a WASI call (no guest code runs meanwhile).
#[fungi_sdk::udf]
fn nap(ms: i64) -> i64 {
    std::thread::sleep(std::time::Duration::from_millis(ms as u64));
    ms
}

/// Time: connects to `addr` and waits for bytes that never come (a blocking read).
#[fungi_sdk::udf]
fn hang_read(addr: &str) -> String {
    use std::io::Read;
    match std::net::TcpStream::connect(addr) {
        Ok(mut s) => {
            let mut buf = [0u8; 16];
            match s.read(&mut buf) {
                Ok(n) => format!("read {n} bytes"),
                Err(e) => format!("read failed: {e}"),
            }
        }
        Err(e) => format!("refused: {e}"),
    }
}

/// CPU: computes for `ms` milliseconds of wall clock, then returns.
#[fungi_sdk::udf]
fn burn(ms: i64) -> i64 {
    let start = std::time::Instant::now();
    let mut v = ms;
    while start.elapsed() < std::time::Duration::from_millis(ms as u64) {
        for _ in 0..1000 {
            v = black_box(v.wrapping_mul(31).wrapping_add(7));
        }
    }
    black_box(v);
    ms
}

/// Host log: a megabyte-long message, `n` times, through the `log` import.
#[fungi_sdk::udf]
fn shout(n: i64) -> i64 {
    let line = "x".repeat(1 << 20);
    for _ in 0..n {
        fungi_sdk::host::log(fungi_sdk::host::Level::Error, &line, &[("k", &line)]);
    }
    n
}

/// File descriptors: opens the files of `dir` (a granted directory) again and again,
/// keeping every handle, until refused; says how many it held.
#[fungi_sdk::udf]
fn hoard_files(dir: &str) -> String {
    let path = format!("{dir}/hoard");
    if let Err(e) = std::fs::write(&path, b"x") {
        return format!("cannot write: {e}");
    }
    let mut held = Vec::new();
    loop {
        match std::fs::File::open(&path) {
            Ok(f) => held.push(f),
            Err(e) => return format!("held {} files, then: {e}", held.len()),
        }
        if held.len() > 1_000_000 {
            return "held a million files".into();
        }
    }
}

/// Sockets: connects to `addr` again and again, keeping every connection.
#[fungi_sdk::udf]
fn hoard_sockets(addr: &str) -> String {
    let mut held = Vec::new();
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(e) => return format!("held {} sockets, then: {e}", held.len()),
        }
        if held.len() > 100_000 {
            return "held 100000 sockets".into();
        }
    }
}

/// Links: tries a hard link and a symbolic link in `dir` (a writable granted directory)
/// that point outside it; says what happened to each.
#[fungi_sdk::udf]
fn link_out(dir: &str) -> String {
    let _ = std::fs::write(format!("{dir}/inside"), b"x");
    let hard = match std::fs::hard_link(format!("{dir}/inside"), format!("{dir}/hard")) {
        Ok(()) => "hard link made".to_string(),
        Err(e) => format!("hard link refused: {e}"),
    };
    let preopens = wasi::filesystem::preopens::get_directories();
    let soft = match preopens.first() {
        Some((descriptor, _)) => match descriptor.symlink_at("/etc/passwd", "soft") {
            Ok(()) => "symlink made".to_string(),
            Err(e) => format!("symlink refused: {e:?}"),
        },
        None => "no directory".to_string(),
    };
    format!("{hard}; {soft}")
}

fungi_sdk::scalar_plugin! {
    name: "evil",
    description: "hostile functions for the host's limit tests",
    functions: [
        spin, bomb, recurse, boom, flood, chatty, connect, read_file, env_count, nap,
        hang_read, burn, shout, hoard_files, hoard_sockets, link_out,
    ],
}
