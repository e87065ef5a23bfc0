//! Native Python functions in SQL (needs a virtual environment with pyarrow and the SDK,
//! as `scripts/test.sh` makes: `FUNGI_PYTHON_VENV`, default `~/.cache/fungi/pyvenv`).

use fungi_sql::SqlSession;

use crate::{run, select};

const UDFS: &str = r#"
import pyarrow as pa
import pyarrow.compute as pc
import fungi

@fungi.udf(returns=pa.int64())
def double_price(price):
    return pc.multiply(price, 2)

@fungi.udf(returns="STRING", mode="row")
def channel_upper(c):
    return c.upper()

@fungi.udaf(returns=pa.float64())
class MeanPrice:
    def create(self):
        return (0, 0)

    def accumulate(self, state, prices):
        return (state[0] + pc.sum(prices).as_py(), state[1] + len(prices))

    def merge(self, a, b):
        return (a[0] + b[0], a[1] + b[1])

    def finish(self, state):
        return state[0] / state[1] if state[1] else None

@fungi.udf(returns=pa.int64())
def fragile(x):
    raise ValueError(f"no luck with {len(x)} rows")

def unmarked(x):
    return x
"#;

fn udfs_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("udfs.py");
    std::fs::write(&path, UDFS).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_functions_and_aggregates_in_a_window_match_native_sql() {
    let (_dir, file) = udfs_file();
    let mut session = SqlSession::default();
    session
        .execute("SET 'parallelism.default' = '2'")
        .await
        .unwrap();
    let script = format!(
        "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '100000');
         CREATE FUNCTION double_price LANGUAGE PYTHON USING '{file}';
         CREATE FUNCTION mean_price AS 'MeanPrice' LANGUAGE PYTHON USING '{file}';
         SELECT window_start, sum(double_price(price)), 2 * sum(price),
                mean_price(price), avg(CAST(price AS DOUBLE)), count(*)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end"
    );
    let rows = select(&mut session, &script).await;
    assert!(rows.len() >= 5, "{} windows", rows.len());
    for row in &rows {
        let cols: Vec<&str> = row.split(" | ").collect();
        assert_eq!(cols[1], cols[2], "python doubled = native doubled: {row}");
        let (py, native): (f64, f64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
        assert!((py - native).abs() < 1e-6 * native.abs().max(1.0), "{row}");
    }
    // A row-wise function, row by row against the native one.
    let rows = select(
        &mut session,
        &format!(
            "CREATE FUNCTION channel_upper LANGUAGE PYTHON USING '{file}';
             SELECT channel_upper(channel), upper(channel) FROM bid"
        ),
    )
    .await;
    assert!(rows.len() > 1000);
    for row in &rows {
        let (a, b) = row.split_once(" | ").unwrap();
        assert_eq!(a, b);
    }
}

/// A raising function under `dead-letter`, native or sandboxed: every row is
/// dead-lettered (records in = out + dead letters) with the traceback naming `file`.
async fn exceptions_are_dead_lettered(create: &str, file: &str, reason: &str) {
    let mut session = SqlSession::default();
    let script = format!(
        "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '2000');
         SET 'plugin.on-error' = 'dead-letter';
         {create};
         SELECT auction, fragile(auction) FROM bid"
    );
    let ran = run(&mut session, &script).await;
    assert!(ran.rows.is_empty());
    assert_eq!(
        ran.dead_letter_counts().get(reason),
        Some(&1840),
        "{create}"
    );
    let letter = ran.dead_letters.last().unwrap();
    assert!(
        letter
            .message
            .contains("Python function 'fragile' raised ValueError: no luck with")
            && letter.message.contains("Traceback (most recent call last)")
            && letter.message.contains(file),
        "{}",
        letter.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_exception_goes_to_the_dead_letter_output_with_its_traceback() {
    let (_dir, file) = udfs_file();
    exceptions_are_dead_lettered(
        &format!("CREATE FUNCTION fragile LANGUAGE PYTHON USING '{file}'"),
        "udfs.py",
        "python error",
    )
    .await;
    // The same function as a sandboxed Python plugin.
    exceptions_are_dead_lettered(
        &format!(
            "CREATE FUNCTION fragile LANGUAGE WASM USING '{}'",
            fungi_plugin_artifacts::PYTHON_TEMPS
        ),
        "temps.py",
        "plugin error",
    )
    .await;
}

#[tokio::test]
async fn python_functions_that_cannot_be_used_are_named() {
    let (_dir, file) = udfs_file();
    let mut session = SqlSession::default();
    for (sql, why) in [
        (
            format!("CREATE FUNCTION unmarked LANGUAGE PYTHON USING '{file}'"),
            "not marked with @fungi.udf",
        ),
        (
            format!("CREATE FUNCTION f AS 'nothing' LANGUAGE PYTHON USING '{file}'"),
            "has no 'nothing'",
        ),
        (
            "CREATE FUNCTION f AS 'no_such_module.f' LANGUAGE PYTHON".to_string(),
            "No module named 'no_such_module'",
        ),
        (
            "CREATE FUNCTION f LANGUAGE PYTHON".to_string(),
            "AS 'module.function'",
        ),
    ] {
        let e = session.execute(&sql).await.unwrap_err().to_string();
        assert!(e.contains(why), "{sql}: {e}");
    }
}

// Python as a Wasm component (`fungi plugin build --python`, built by the artifacts crate
// from `plugins/python/` and `conformance/hostile/python/`): the same statements and
// limits as a Rust plugin.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxed_python_plugins_in_a_window_match_native_sql() {
    use fungi_plugin_artifacts::{PYTHON_MEAN_PRICE, PYTHON_TEMPS};
    let mut session = SqlSession::default();
    session
        .execute("SET 'parallelism.default' = '2'")
        .await
        .unwrap();
    let script = format!(
        "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '50000');
         CREATE FUNCTION to_fahrenheit LANGUAGE WASM USING '{PYTHON_TEMPS}';
         LOAD PLUGIN '{PYTHON_MEAN_PRICE}';
         SELECT window_start, sum(to_fahrenheit(price)), sum(price * 1.8 + 32),
                mean_price(price), avg(CAST(price AS DOUBLE)), count(*)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end"
    );
    let rows = select(&mut session, &script).await;
    assert!(rows.len() >= 3, "{} windows", rows.len());
    for row in &rows {
        let cols: Vec<f64> = row
            .split(" | ")
            .skip(1)
            .map(|c| c.parse().unwrap())
            .collect();
        assert!((cols[0] - cols[1]).abs() < 1e-6 * cols[1].abs(), "{row}");
        assert!((cols[2] - cols[3]).abs() < 1e-9 * cols[3].abs(), "{row}");
    }
    // Row-wise, against the native function on every row (nulls stay null).
    let rows = select(
        &mut session,
        &format!(
            "CREATE FUNCTION shout LANGUAGE WASM USING '{PYTHON_TEMPS}';
             SELECT shout(channel), upper(channel) || '!' FROM bid"
        ),
    )
    .await;
    assert!(rows.len() > 1000);
    for row in &rows {
        let (a, b) = row.split_once(" | ").unwrap();
        assert_eq!(a, b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_python_loop_is_stopped_by_the_cpu_limit() {
    use fungi_plugin_artifacts::HOSTILE_PYTHON_SPIN;
    for (function, limit, why) in [
        (
            "spin",
            "SET 'plugin.call-timeout' = '200 ms'",
            "call time limit of 200 ms",
        ),
        (
            "hog",
            "SET 'plugin.memory-per-instance' = '96 MB'",
            "memory limit of 96 MiB per instance exceeded",
        ),
    ] {
        let mut session = SqlSession::default();
        let script = format!(
            "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '1000');
             {limit};
             CREATE FUNCTION {function} LANGUAGE WASM USING '{HOSTILE_PYTHON_SPIN}';
             SELECT {function}(auction) FROM bid"
        );
        let err = run(&mut session, &script).await.error();
        assert!(
            err.contains(&format!("plugin 'spin', function '{function}'")) && err.contains(why),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_python_bodies_define_functions() {
    let mut session = SqlSession::default();
    let rows = select(
        &mut session,
        "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '2000');
         -- Undecorated, typed by RETURNS: a row-wise function (nulls skip the call).
         CREATE FUNCTION tag(c VARCHAR) RETURNS VARCHAR LANGUAGE PYTHON AS $$
def tag(c):
    return f'<{c}>'  # quotes; and a semicolon
$$;
         -- Decorated: vectorized, as declared.
         CREATE FUNCTION cents LANGUAGE PYTHON AS $$
import pyarrow as pa
import pyarrow.compute as pc
import fungi

@fungi.udf(returns=pa.int64())
def cents(price):
    return pc.multiply(price, 100)
$$;
         SELECT tag(channel), '<' || channel || '>', cents(price), price * 100 FROM bid",
    )
    .await;
    assert_eq!(rows.len(), 1840);
    for row in &rows {
        let cols: Vec<&str> = row.split(" | ").collect();
        assert_eq!((cols[0], cols[2]), (cols[1], cols[3]), "{row}");
    }
    let e = session
        .execute("CREATE FUNCTION plain LANGUAGE PYTHON AS $$\ndef plain(x):\n    return x\n$$")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not marked with @fungi.udf"), "{e}");
    let e = session
        .execute("CREATE FUNCTION broken RETURNS INT LANGUAGE PYTHON AS $$\ndef broken(x:\n$$")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SyntaxError") && e.contains("<inline_broken>"),
        "{e}"
    );
}
